/* One status enum for the whole firmware, reused as the protocol's error
 * codes.  Values are grouped by range (0x00xx ok, 0x01xx framing, 0x02xx a
 * refused request, 0x03xx the device failed); names, codes and texts all come
 * from the single X-macro list TX_ERROR_LIST in tinyexit_protocol.h, which is
 * generated from the Python protocol module, so nothing here can drift. */
#ifndef TE_STATUS_H
#define TE_STATUS_H

#include "tinyexit_protocol.h"

typedef enum {
#define TE_STATUS_ENUM(name, code, text) TE_##name = code,
    TX_ERROR_LIST(TE_STATUS_ENUM)
#undef TE_STATUS_ENUM
} te_status_t;

const char *te_status_name(te_status_t status);  /* "FRAME_CRC" */
const char *te_status_text(te_status_t status);  /* "CRC mismatch" */

/* Return `err` from the enclosing function unless `cond` holds. */
#define TE_CHECK(cond, err)        \
    do {                           \
        if (!(cond)) return (err); \
    } while (0)

#endif
