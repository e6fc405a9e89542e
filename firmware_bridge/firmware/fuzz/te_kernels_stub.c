/* Stub kernels for the protocol-only fuzz target (fuzz-c --target protocol_stub).
 *
 * Same symbols as kernels/reference/, no arithmetic: the frame decoder and the
 * request handler run at libFuzzer speed instead of waiting on convolutions.
 * Outputs are left as the arena holds them except for te_copy_s8, whose size is
 * its argument; nothing here is ever linked into a firmware image.
 */
#include <string.h>

#include "te_kernels.h"

void te_conv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{ (void)p; (void)in; (void)out; (void)scratch; }
void te_dwconv_s8(const te_conv_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_fc_s8(const te_fc_params_t *p, const int8_t *in, int8_t *out, void *scratch)
{ (void)p; (void)in; (void)out; (void)scratch; }
void te_add_s8(const te_add_params_t *p, const int8_t *a, const int8_t *b, int8_t *out)
{ (void)p; (void)a; (void)b; (void)out; }
void te_mean_s8(const te_mean_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_avgpool_s8(const te_avgpool_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_pad_s8(const te_pad_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_lut_s8(const te_lut_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_softmax_s8(const te_softmax_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_requant_s8(const te_requant_params_t *p, const int8_t *in, int8_t *out) { (void)p; (void)in; (void)out; }
void te_copy_s8(uint32_t size, const int8_t *in, int8_t *out) { memmove(out, in, size); }
