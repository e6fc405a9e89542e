/* Host tool: the C frame decoder on a byte stream (stdin), one line per event,
 * in the format of tests/firmware_bridge/transcripts/<name>.expect:
 *   frame 0x<type> <seq> <payload hex or ->
 *   error <STATUS_NAME> 0x<code>
 * so the recorded transcripts check the C parser exactly as the Python one. */
#include <stdio.h>

#include "te_frame.h"

static te_decoder_t decoder;

int main(int argc, char **argv)
{
    unsigned max_payload = TE_MAX_PAYLOAD;
    if (argc > 1) sscanf(argv[1], "%u", &max_payload);
    te_decoder_init(&decoder, (uint16_t)max_payload);
    int c;
    while ((c = getchar()) != EOF) {
        te_frame_t f;
        te_status_t err;
        switch (te_decoder_feed(&decoder, (uint8_t)c, &f, &err)) {
        case TE_FEED_FRAME:
            printf("frame 0x%02X %u ", f.type, f.seq);
            if (!f.length) printf("-");
            for (unsigned i = 0; i < f.length; ++i) printf("%02x", f.payload[i]);
            printf("\n");
            break;
        case TE_FEED_ERROR:
            printf("error %s 0x%04X\n", te_status_name(err), (unsigned)err);
            break;
        default:
            break;
        }
    }
    return 0;
}
