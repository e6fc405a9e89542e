/* Reed-Solomon forward error correction of link frames (see te_fec.h). */
#include "te_fec.h"

#include <string.h>

/* GF(2^8) with the primitive polynomial x^8+x^4+x^3+x^2+1 (0x11D), alpha = 2:
 * gf_exp[i] = alpha^i (doubled, so a sum of two logs needs no reduction), gf_log[alpha^i] = i
 * (gf_log[0] unused).  tests/firmware/test_fec_c.py recomputes both. */
static const uint8_t gf_exp[512] = {
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1D, 0x3A, 0x74, 0xE8, 0xCD, 0x87, 0x13, 0x26,
    0x4C, 0x98, 0x2D, 0x5A, 0xB4, 0x75, 0xEA, 0xC9, 0x8F, 0x03, 0x06, 0x0C, 0x18, 0x30, 0x60, 0xC0,
    0x9D, 0x27, 0x4E, 0x9C, 0x25, 0x4A, 0x94, 0x35, 0x6A, 0xD4, 0xB5, 0x77, 0xEE, 0xC1, 0x9F, 0x23,
    0x46, 0x8C, 0x05, 0x0A, 0x14, 0x28, 0x50, 0xA0, 0x5D, 0xBA, 0x69, 0xD2, 0xB9, 0x6F, 0xDE, 0xA1,
    0x5F, 0xBE, 0x61, 0xC2, 0x99, 0x2F, 0x5E, 0xBC, 0x65, 0xCA, 0x89, 0x0F, 0x1E, 0x3C, 0x78, 0xF0,
    0xFD, 0xE7, 0xD3, 0xBB, 0x6B, 0xD6, 0xB1, 0x7F, 0xFE, 0xE1, 0xDF, 0xA3, 0x5B, 0xB6, 0x71, 0xE2,
    0xD9, 0xAF, 0x43, 0x86, 0x11, 0x22, 0x44, 0x88, 0x0D, 0x1A, 0x34, 0x68, 0xD0, 0xBD, 0x67, 0xCE,
    0x81, 0x1F, 0x3E, 0x7C, 0xF8, 0xED, 0xC7, 0x93, 0x3B, 0x76, 0xEC, 0xC5, 0x97, 0x33, 0x66, 0xCC,
    0x85, 0x17, 0x2E, 0x5C, 0xB8, 0x6D, 0xDA, 0xA9, 0x4F, 0x9E, 0x21, 0x42, 0x84, 0x15, 0x2A, 0x54,
    0xA8, 0x4D, 0x9A, 0x29, 0x52, 0xA4, 0x55, 0xAA, 0x49, 0x92, 0x39, 0x72, 0xE4, 0xD5, 0xB7, 0x73,
    0xE6, 0xD1, 0xBF, 0x63, 0xC6, 0x91, 0x3F, 0x7E, 0xFC, 0xE5, 0xD7, 0xB3, 0x7B, 0xF6, 0xF1, 0xFF,
    0xE3, 0xDB, 0xAB, 0x4B, 0x96, 0x31, 0x62, 0xC4, 0x95, 0x37, 0x6E, 0xDC, 0xA5, 0x57, 0xAE, 0x41,
    0x82, 0x19, 0x32, 0x64, 0xC8, 0x8D, 0x07, 0x0E, 0x1C, 0x38, 0x70, 0xE0, 0xDD, 0xA7, 0x53, 0xA6,
    0x51, 0xA2, 0x59, 0xB2, 0x79, 0xF2, 0xF9, 0xEF, 0xC3, 0x9B, 0x2B, 0x56, 0xAC, 0x45, 0x8A, 0x09,
    0x12, 0x24, 0x48, 0x90, 0x3D, 0x7A, 0xF4, 0xF5, 0xF7, 0xF3, 0xFB, 0xEB, 0xCB, 0x8B, 0x0B, 0x16,
    0x2C, 0x58, 0xB0, 0x7D, 0xFA, 0xE9, 0xCF, 0x83, 0x1B, 0x36, 0x6C, 0xD8, 0xAD, 0x47, 0x8E, 0x01,
    0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x1D, 0x3A, 0x74, 0xE8, 0xCD, 0x87, 0x13, 0x26, 0x4C,
    0x98, 0x2D, 0x5A, 0xB4, 0x75, 0xEA, 0xC9, 0x8F, 0x03, 0x06, 0x0C, 0x18, 0x30, 0x60, 0xC0, 0x9D,
    0x27, 0x4E, 0x9C, 0x25, 0x4A, 0x94, 0x35, 0x6A, 0xD4, 0xB5, 0x77, 0xEE, 0xC1, 0x9F, 0x23, 0x46,
    0x8C, 0x05, 0x0A, 0x14, 0x28, 0x50, 0xA0, 0x5D, 0xBA, 0x69, 0xD2, 0xB9, 0x6F, 0xDE, 0xA1, 0x5F,
    0xBE, 0x61, 0xC2, 0x99, 0x2F, 0x5E, 0xBC, 0x65, 0xCA, 0x89, 0x0F, 0x1E, 0x3C, 0x78, 0xF0, 0xFD,
    0xE7, 0xD3, 0xBB, 0x6B, 0xD6, 0xB1, 0x7F, 0xFE, 0xE1, 0xDF, 0xA3, 0x5B, 0xB6, 0x71, 0xE2, 0xD9,
    0xAF, 0x43, 0x86, 0x11, 0x22, 0x44, 0x88, 0x0D, 0x1A, 0x34, 0x68, 0xD0, 0xBD, 0x67, 0xCE, 0x81,
    0x1F, 0x3E, 0x7C, 0xF8, 0xED, 0xC7, 0x93, 0x3B, 0x76, 0xEC, 0xC5, 0x97, 0x33, 0x66, 0xCC, 0x85,
    0x17, 0x2E, 0x5C, 0xB8, 0x6D, 0xDA, 0xA9, 0x4F, 0x9E, 0x21, 0x42, 0x84, 0x15, 0x2A, 0x54, 0xA8,
    0x4D, 0x9A, 0x29, 0x52, 0xA4, 0x55, 0xAA, 0x49, 0x92, 0x39, 0x72, 0xE4, 0xD5, 0xB7, 0x73, 0xE6,
    0xD1, 0xBF, 0x63, 0xC6, 0x91, 0x3F, 0x7E, 0xFC, 0xE5, 0xD7, 0xB3, 0x7B, 0xF6, 0xF1, 0xFF, 0xE3,
    0xDB, 0xAB, 0x4B, 0x96, 0x31, 0x62, 0xC4, 0x95, 0x37, 0x6E, 0xDC, 0xA5, 0x57, 0xAE, 0x41, 0x82,
    0x19, 0x32, 0x64, 0xC8, 0x8D, 0x07, 0x0E, 0x1C, 0x38, 0x70, 0xE0, 0xDD, 0xA7, 0x53, 0xA6, 0x51,
    0xA2, 0x59, 0xB2, 0x79, 0xF2, 0xF9, 0xEF, 0xC3, 0x9B, 0x2B, 0x56, 0xAC, 0x45, 0x8A, 0x09, 0x12,
    0x24, 0x48, 0x90, 0x3D, 0x7A, 0xF4, 0xF5, 0xF7, 0xF3, 0xFB, 0xEB, 0xCB, 0x8B, 0x0B, 0x16, 0x2C,
    0x58, 0xB0, 0x7D, 0xFA, 0xE9, 0xCF, 0x83, 0x1B, 0x36, 0x6C, 0xD8, 0xAD, 0x47, 0x8E, 0x01, 0x02,
};
static const uint8_t gf_log[256] = {
    0x00, 0x00, 0x01, 0x19, 0x02, 0x32, 0x1A, 0xC6, 0x03, 0xDF, 0x33, 0xEE, 0x1B, 0x68, 0xC7, 0x4B,
    0x04, 0x64, 0xE0, 0x0E, 0x34, 0x8D, 0xEF, 0x81, 0x1C, 0xC1, 0x69, 0xF8, 0xC8, 0x08, 0x4C, 0x71,
    0x05, 0x8A, 0x65, 0x2F, 0xE1, 0x24, 0x0F, 0x21, 0x35, 0x93, 0x8E, 0xDA, 0xF0, 0x12, 0x82, 0x45,
    0x1D, 0xB5, 0xC2, 0x7D, 0x6A, 0x27, 0xF9, 0xB9, 0xC9, 0x9A, 0x09, 0x78, 0x4D, 0xE4, 0x72, 0xA6,
    0x06, 0xBF, 0x8B, 0x62, 0x66, 0xDD, 0x30, 0xFD, 0xE2, 0x98, 0x25, 0xB3, 0x10, 0x91, 0x22, 0x88,
    0x36, 0xD0, 0x94, 0xCE, 0x8F, 0x96, 0xDB, 0xBD, 0xF1, 0xD2, 0x13, 0x5C, 0x83, 0x38, 0x46, 0x40,
    0x1E, 0x42, 0xB6, 0xA3, 0xC3, 0x48, 0x7E, 0x6E, 0x6B, 0x3A, 0x28, 0x54, 0xFA, 0x85, 0xBA, 0x3D,
    0xCA, 0x5E, 0x9B, 0x9F, 0x0A, 0x15, 0x79, 0x2B, 0x4E, 0xD4, 0xE5, 0xAC, 0x73, 0xF3, 0xA7, 0x57,
    0x07, 0x70, 0xC0, 0xF7, 0x8C, 0x80, 0x63, 0x0D, 0x67, 0x4A, 0xDE, 0xED, 0x31, 0xC5, 0xFE, 0x18,
    0xE3, 0xA5, 0x99, 0x77, 0x26, 0xB8, 0xB4, 0x7C, 0x11, 0x44, 0x92, 0xD9, 0x23, 0x20, 0x89, 0x2E,
    0x37, 0x3F, 0xD1, 0x5B, 0x95, 0xBC, 0xCF, 0xCD, 0x90, 0x87, 0x97, 0xB2, 0xDC, 0xFC, 0xBE, 0x61,
    0xF2, 0x56, 0xD3, 0xAB, 0x14, 0x2A, 0x5D, 0x9E, 0x84, 0x3C, 0x39, 0x53, 0x47, 0x6D, 0x41, 0xA2,
    0x1F, 0x2D, 0x43, 0xD8, 0xB7, 0x7B, 0xA4, 0x76, 0xC4, 0x17, 0x49, 0xEC, 0x7F, 0x0C, 0x6F, 0xF6,
    0x6C, 0xA1, 0x3B, 0x52, 0x29, 0x9D, 0x55, 0xAA, 0xFB, 0x60, 0x86, 0xB1, 0xBB, 0xCC, 0x3E, 0x5A,
    0xCB, 0x59, 0x5F, 0xB0, 0x9C, 0xA9, 0xA0, 0x51, 0x0B, 0xF5, 0x16, 0xEB, 0x7A, 0x75, 0x2C, 0xD7,
    0x4F, 0xAE, 0xD5, 0xE9, 0xE6, 0xE7, 0xAD, 0xE8, 0x74, 0xD6, 0xF4, 0xEA, 0xA8, 0x50, 0x58, 0xAF,
};

/* Generator polynomials g(x) = prod_{i<np} (x - alpha^i), coefficients below the leading 1, highest
 * power first, for the three parity counts a block can have (4, 6, 8). */
static const uint8_t gen4[4] = {0x0F, 0x36, 0x78, 0x40};
static const uint8_t gen6[6] = {0x3F, 0x01, 0xDA, 0x20, 0xE3, 0x26};
static const uint8_t gen8[8] = {0xFF, 0x0B, 0x51, 0x36, 0xEF, 0xAD, 0xC8, 0x18};

/* Whitening (spec v1.1): byte i of every codeword goes on the wire XORed with whiten[i] =
 * alpha^((7i^2 + 11i + 1) mod 255).  RS codes are cyclic, so a block of zeros read one place off after a lost
 * byte would be a codeword again; whitened, it is as far from every codeword as noise. */
static const uint8_t whiten[TE_FEC_BLOCK + TE_FEC_MAX_PARITY] = {
    0x02, 0x5A, 0x0A, 0xAF, 0xD5, 0xF5, 0x5F, 0x3F, 0x0C, 0xD5, 0x9F, 0xDD, 0x76, 0x14,
    0xAD, 0xB2, 0x95, 0xB3, 0x7B, 0xDC, 0xC3, 0x10, 0x6F, 0xB8, 0x9B, 0x6F, 0xF1, 0x9F,
    0xDC, 0x7F, 0x02, 0x95, 0x66, 0xD3, 0x14, 0x25, 0x4E, 0x9F, 0x65, 0x81, 0x3F, 0xFB,
    0x6F, 0xD5, 0xCD, 0x4F, 0x5A, 0xB3, 0xD3, 0x80, 0x38, 0x39, 0x76, 0x44, 0xAF, 0x34,
};

#define MAXP TE_FEC_MAX_PARITY
#define POLY (MAXP + 2u) /* coefficients of a locator: its degree never exceeds np + 1 */

typedef char te_fec_raw_fits_decoder[(sizeof(((te_decoder_t *)0)->raw) >= TE_FEC_MAX_RAW) ? 1 : -1];

static uint8_t gf_mul(uint8_t a, uint8_t b) { return (a && b) ? gf_exp[gf_log[a] + gf_log[b]] : 0; }

/* a / b, b != 0 */
static uint8_t gf_div(uint8_t a, uint8_t b) { return a ? gf_exp[gf_log[a] + 255u - gf_log[b]] : 0; }

static uint8_t gf_alpha(unsigned e) { return gf_exp[e % 255u]; }

static size_t parity_of(size_t k) { return 2u * ((k + 15u) / 16u) + 2u; }

/* ---- one codeword ------------------------------------------------------------------------------ */

void te_rs_encode(const uint8_t *data, size_t k, uint8_t *parity, size_t np)
{
    const uint8_t *g = np == 4 ? gen4 : np == 6 ? gen6 : gen8;
    memset(parity, 0, np);
    for (size_t i = 0; i < k; ++i) { /* the remainder of data(x) * x^np by g(x), one byte at a time */
        const uint8_t fb = data[i] ^ parity[0];
        for (size_t j = 0; j + 1 < np; ++j) parity[j] = parity[j + 1] ^ gf_mul(fb, g[j]);
        parity[np - 1] = gf_mul(fb, g[np - 1]);
    }
}

/* S_j = cw(alpha^j), j < np; byte i is the coefficient of x^(n-1-i). */
static void syndromes(const uint8_t *cw, size_t n, size_t np, uint8_t *s)
{
    for (size_t j = 0; j < np; ++j) {
        uint8_t acc = 0;
        for (size_t i = 0; i < n; ++i) acc = gf_mul(acc, gf_exp[j]) ^ cw[i];
        s[j] = acc;
    }
}

/* Add v at byte i of an n-byte word to its syndromes. */
static void syndromes_add(uint8_t *s, size_t np, size_t n, size_t i, uint8_t v)
{
    if (!v) return;
    const unsigned e = (unsigned)(n - 1u - i), lv = gf_log[v];
    for (size_t j = 0; j < np; ++j) s[j] ^= gf_exp[(lv + j * e) % 255u];
}

/* The errata (positions and magnitudes) of a word from its syndromes: Berlekamp-Massey seeded with the
 * erasure's locator, Chien search over the n positions, Forney.  Returns their count, or -1 when the word
 * is not within 2*errors + erasures <= np of a codeword. */
static int errata(const uint8_t *s, size_t n, size_t np, int erasure, uint8_t *pos, uint8_t *mag)
{
    uint8_t lam[POLY] = {1}, b[POLY] = {1}, t[POLY];
    size_t L = 0, f = 0;
    uint8_t any = 0;
    for (size_t j = 0; j < np; ++j) any |= s[j];
    if (!any) return 0;
    if (erasure >= 0) {
        lam[1] = b[1] = gf_alpha((unsigned)(n - 1u - (size_t)erasure));
        L = f = 1;
    }
    size_t hi = f + 1u; /* lam and b have degree < hi; one more each step, never past np + 1 < POLY */
    for (size_t r = f; r < np; ++r) {
        uint8_t delta = 0;
        for (size_t j = 0; j <= r && j < hi; ++j) delta ^= gf_mul(lam[j], s[r - j]);
        for (size_t j = hi; j > 0; --j) b[j] = b[j - 1u];
        b[0] = 0;
        hi++;
        if (!delta) continue;
        const unsigned ld = gf_log[delta];
        for (size_t j = 0; j < hi; ++j) t[j] = lam[j] ^ (b[j] ? gf_exp[gf_log[b[j]] + ld] : 0);
        if (2u * L <= r + f) {
            for (size_t j = 0; j < hi; ++j) b[j] = lam[j] ? gf_exp[gf_log[lam[j]] + 255u - ld] : 0;
            L = r + 1u + f - L;
        }
        memcpy(lam, t, hi);
    }
    if (2u * L > np + f) return -1; /* 2 * (L - f) + f > np */
    size_t deg = POLY - 1u;
    while (deg && !lam[deg]) deg--;
    if (deg != L) return -1;
    /* Chien search: at byte i the term j is lam_j * alpha^(-j*(n-1-i)); its log grows by j per byte */
    unsigned term[POLY];
    for (size_t j = 1; j <= deg; ++j) term[j] = (gf_log[lam[j]] + j * (256u - n)) % 255u;
    size_t found = 0;
    for (size_t i = 0; i < n; ++i) {
        uint8_t v = 1; /* lam_0 */
        for (size_t j = 1; j <= deg; ++j) {
            if (lam[j]) v ^= gf_exp[term[j]];
            term[j] += j;
            if (term[j] >= 255u) term[j] -= 255u;
        }
        if (!v) pos[found++] = (uint8_t)i;
    }
    if (found != L) return -1;
    uint8_t omega[MAXP];
    for (size_t k = 0; k < np; ++k) { /* S(x) * lam(x) mod x^np */
        omega[k] = 0;
        for (size_t j = 0; j <= k && j <= deg; ++j) omega[k] ^= gf_mul(lam[j], s[k - j]);
    }
    for (size_t m = 0; m < found; ++m) {
        const unsigned e = (unsigned)(n - 1u - pos[m]), inv = 255u - e;
        uint8_t num = 0, den = 0;
        for (size_t k = 0; k < np; ++k)
            if (omega[k]) num ^= gf_exp[(gf_log[omega[k]] + k * inv) % 255u];
        for (size_t j = 1; j <= deg; j += 2) /* the formal derivative keeps the odd powers */
            if (lam[j]) den ^= gf_exp[(gf_log[lam[j]] + (j - 1u) * inv) % 255u];
        if (!den) return -1;
        mag[m] = gf_mul(gf_alpha(e), gf_div(num, den)); /* first root alpha^0: Y = X * omega / lam' */
    }
    return (int)found;
}

/* Decode a word whose syndromes are s; on success the corrected first k bytes go to data and the result is
 * the number of bytes changed outside the erasure (what the search ranks candidates by), else -1. */
static int decode_word(const uint8_t *cw, size_t n, size_t np, const uint8_t *s, int erasure, uint8_t *data,
                       size_t k)
{
    uint8_t pos[POLY], mag[POLY], check[MAXP];
    const int count = errata(s, n, np, erasure, pos, mag);
    if (count < 0) return -1;
    memcpy(check, s, np);
    for (int m = 0; m < count; ++m) syndromes_add(check, np, n, pos[m], mag[m]);
    uint8_t any = 0;
    for (size_t j = 0; j < np; ++j) any |= check[j];
    if (any) return -1;
    memcpy(data, cw, k);
    int changed = 0;
    for (int m = 0; m < count; ++m) {
        if (pos[m] < k) data[pos[m]] ^= mag[m];
        changed += mag[m] && (int)pos[m] != erasure;
    }
    return changed;
}

int te_rs_decode(uint8_t *cw, size_t n, size_t np, int erasure)
{
    uint8_t s[MAXP], pos[POLY], mag[POLY];
    if (np > MAXP || n <= np || n > 255u || erasure >= (int)n) return 0;
    syndromes(cw, n, np, s);
    const int count = errata(s, n, np, erasure, pos, mag);
    if (count < 0) return 0;
    for (int m = 0; m < count; ++m) syndromes_add(s, np, n, pos[m], mag[m]);
    for (size_t j = 0; j < np; ++j)
        if (s[j]) return 0;
    for (int m = 0; m < count; ++m) cw[pos[m]] ^= mag[m];
    return 1;
}

/* ---- blocks ------------------------------------------------------------------------------------ */

typedef struct {
    size_t blocks, base, longer; /* `longer` first blocks hold base + 1 data bytes, the rest base */
} layout_t;

static layout_t layout_of(size_t n)
{
    layout_t l;
    l.blocks = (n + TE_FEC_BLOCK - 1u) / TE_FEC_BLOCK;
    l.base = l.blocks ? n / l.blocks : 0;
    l.longer = l.blocks ? n % l.blocks : 0;
    return l;
}

static size_t block_data(const layout_t *l, size_t i) { return l->base + (i < l->longer); }

/* Codeword bytes of n raw bytes, without the 254-byte cap. */
static size_t codeword_bytes(size_t n)
{
    const layout_t l = layout_of(n);
    return n + l.longer * parity_of(l.base + 1u) + (l.blocks - l.longer) * parity_of(l.base);
}

size_t te_fec_encoded_size(size_t n)
{
    if (n < TX_HEADER_SIZE + TX_CRC_SIZE || n > TE_FEC_MAX_RAW) return 0;
    const size_t e = codeword_bytes(n);
    return e <= TE_FEC_MAX_CODEWORDS ? e : 0;
}

/* The raw length (>= header + CRC) whose codewords take exactly e bytes, or 0 (codeword_bytes rises
 * strictly, so there is at most one). */
static size_t raw_length_for(size_t e)
{
    size_t lo = TX_HEADER_SIZE + TX_CRC_SIZE, hi = TE_FEC_MAX_RAW;
    while (lo <= hi) {
        const size_t mid = (lo + hi) / 2u, got = codeword_bytes(mid);
        if (got == e) return mid;
        if (got < e) lo = mid + 1u;
        else hi = mid - 1u;
    }
    return 0;
}

/* Byte `place` of a codeword as it goes on the wire: whitened, 0x00 replaced by the key (key 0: no stuffing). */
static uint8_t on_wire(uint8_t c, size_t place, uint8_t key)
{
    c ^= whiten[place];
    return c ? c : key;
}

static void mark(uint8_t *seen, const uint8_t *p, size_t n, size_t place)
{
    for (size_t i = 0; i < n; ++i) {
        const uint8_t c = on_wire(p[i], place + i, 0);
        seen[c >> 3] |= (uint8_t)(1u << (c & 7u));
    }
}

static void put_wire(void (*put)(uint8_t), const uint8_t *p, size_t n, size_t place, uint8_t key)
{
    for (size_t i = 0; i < n; ++i) put(on_wire(p[i], place + i, key));
}

/* Two passes over the blocks (the parity computed twice) so that no 254-byte copy of the codewords is
 * needed to find the key before the first byte goes out. */
int te_fec_send(const uint8_t *raw, size_t n, int lead, void (*put)(uint8_t))
{
    if (!te_fec_encoded_size(n)) return 0;
    const layout_t l = layout_of(n);
    uint8_t seen[32] = {0}, parity[MAXP];
    size_t off = 0;
    for (size_t i = 0; i < l.blocks; off += block_data(&l, i), ++i) {
        const size_t k = block_data(&l, i), np = parity_of(k);
        te_rs_encode(raw + off, k, parity, np);
        mark(seen, raw + off, k, 0);
        mark(seen, parity, np, k);
    }
    uint8_t key = 1;
    while (seen[key >> 3] & (1u << (key & 7u))) key++; /* <= 254 bytes seen: a value in 1..255 is free */
    if (lead) put(TX_DELIMITER);
    for (unsigned i = 0; i < TE_FEC_KEYS; ++i) put(key);
    off = 0;
    for (size_t i = 0; i < l.blocks; off += block_data(&l, i), ++i) {
        const size_t k = block_data(&l, i), np = parity_of(k);
        te_rs_encode(raw + off, k, parity, np);
        put_wire(put, raw + off, k, 0, key);
        put_wire(put, parity, np, k, key);
    }
    put(TX_DELIMITER);
    return 1;
}

/* The received codeword bytes of one body, unstuffed on reading. */
typedef struct {
    const uint8_t *c;
    size_t m;
    uint8_t key;
} words_t;

static uint8_t word(const words_t *w, size_t i) { return w->c[i] == w->key ? 0 : w->c[i]; }

/* n received bytes from `from` as the codeword places place0.. : unstuffed and unwhitened */
static void load(uint8_t *dst, const words_t *w, size_t from, size_t n, size_t place0)
{
    for (size_t i = 0; i < n; ++i) dst[i] = word(w, from + i) ^ whiten[place0 + i];
}

/* A lost byte in the block at `at`: candidate j is the received bytes with a hole (an erasure) at place j.
 * The first candidate with the fewest corrections wins (one with none ends the search); -1 if none decodes.
 * Neighbouring candidates differ in two places, so the syndromes are updated, not recomputed. */
static int search_lost(const words_t *w, size_t at, size_t k, uint8_t *out)
{
    uint8_t cand[TE_FEC_BLOCK + MAXP], s[MAXP], data[TE_FEC_BLOCK];
    const size_t np = parity_of(k), n = k + np;
    int best = -1;
    cand[0] = 0;
    load(cand + 1, w, at, n - 1u, 1);
    syndromes(cand, n, np, s);
    for (size_t j = 0; j < n && best != 0; ++j) {
        if (j) { /* received byte j-1 moves from place j back to place j-1; the hole follows to place j */
            const uint8_t c = word(w, at + j - 1u);
            syndromes_add(s, np, n, j, cand[j]);
            cand[j] = 0;
            cand[j - 1u] = c ^ whiten[j - 1u];
            syndromes_add(s, np, n, j - 1u, cand[j - 1u]);
        }
        const int got = decode_word(cand, n, np, s, (int)j, data, k);
        if (got >= 0 && (best < 0 || got < best)) {
            best = got;
            memcpy(out, data, k);
        }
    }
    return best;
}

/* An extra byte in the block at `at`: candidate j is the n + 1 received bytes without byte j (errors only). */
static int search_extra(const words_t *w, size_t at, size_t k, uint8_t *out)
{
    uint8_t cand[TE_FEC_BLOCK + MAXP], s[MAXP], data[TE_FEC_BLOCK];
    const size_t np = parity_of(k), n = k + np;
    int best = -1;
    load(cand, w, at + 1u, n, 0);
    syndromes(cand, n, np, s);
    for (size_t j = 0; j <= n && best != 0; ++j) {
        if (j) { /* place j-1 holds received byte j-1 instead of byte j */
            const uint8_t c = word(w, at + j - 1u) ^ whiten[j - 1u];
            syndromes_add(s, np, n, j - 1u, cand[j - 1u] ^ c);
            cand[j - 1u] = c;
        }
        const int got = decode_word(cand, n, np, s, -1, data, k);
        if (got >= 0 && (best < 0 || got < best)) {
            best = got;
            memcpy(out, data, k);
        }
    }
    return best;
}

typedef struct {
    int fixed;  /* bytes corrected */
    int kind;   /* +1 a lost byte restored, -1 an extra byte removed, 0 aligned */
} option_t;

/* The decodings of one block of k data bytes at read position p, in the order to try them (as the reference
 * fec.py's _block_options): the last block takes exactly the bytes left; aligned first (not in the last
 * block while bytes are missing or extra), alone if it corrected nothing; then, while bytes are missing or
 * extra, the search for the lost or extra byte.  Two options go cheaper first (cost: corrections, +1 for the
 * lost or extra byte; ties: aligned).  Returns how many (0..2); their data in data[0], data[1]. */
/* not inlined: its scratch would otherwise sit in every level of the depth-first search's stack */
__attribute__((noinline)) static int block_options(const words_t *w, size_t p, int left, size_t k, int last, option_t *opt,
                         uint8_t data[2][TE_FEC_BLOCK])
{
    uint8_t cand[TE_FEC_BLOCK + MAXP], s[MAXP];
    const size_t np = parity_of(k), n = k + np, m = w->m;
    int count = 0, got;
    if (last && (long)(m - p) != (long)n - left) return 0;
    if (p + n <= m && (left == 0 || !last)) {
        load(cand, w, p, n, 0);
        syndromes(cand, n, np, s);
        if ((got = decode_word(cand, n, np, s, -1, data[0], k)) >= 0) {
            opt[count++] = (option_t){got, 0};
            if (!got) return count;
        }
    }
    if (left > 0 && p + n - 1u <= m) {
        if ((got = search_lost(w, p, k, data[count])) >= 0) opt[count++] = (option_t){got, 1};
    } else if (left < 0 && p + n + 1u <= m) {
        if ((got = search_extra(w, p, k, data[count])) >= 0) opt[count++] = (option_t){got, -1};
    }
    if (count == 2 && opt[1].fixed + 1 < opt[0].fixed) { /* the search first */
        const option_t o = opt[0];
        uint8_t t[TE_FEC_BLOCK];
        opt[0] = opt[1];
        opt[1] = o;
        memcpy(t, data[0], k);
        memcpy(data[0], data[1], k);
        memcpy(data[1], t, k);
    }
    return count;
}

/* The first block's options per sign of the bytes still lost (-1, 0, +1): not the last block, they depend on
 * its size and that sign only, so shift hypotheses that give it the same size search it once (speed only; fec.py
 * does the same). */
typedef struct {
    size_t k[3];                          /* 0: not computed yet */
    int count[3];
    option_t opt[3][2];
    uint8_t data[3][2][TE_FEC_BLOCK];
} first_block_t;

typedef struct {
    first_block_t *first;
    const words_t *w;
    layout_t l;
    size_t n;  /* raw bytes of this hypothesis */
    uint8_t *raw;
    int (*accept)(const uint8_t *raw, size_t n, void *ctx);
    void *ctx;
} search_t;

/* Depth first over the blocks from block i (its data at raw + off, read position p, `left` bytes still lost
 * or, negative, extra): every complete decoding is offered to accept, in order; the first accepted ends it.
 * Depth <= 5 blocks. */
static size_t blocks_from(const search_t *h, size_t i, size_t off, size_t p, int left)
{
    if (i == h->l.blocks) return p == h->w->m && h->accept(h->raw, h->n, h->ctx) ? h->n : 0;
    /* each level's two options in RAM, not on the stack (the device's stack is 2 KiB); the search runs
     * only in the main loop, never reentered */
    static uint8_t level_data[TE_FEC_MAX_RAW / (TE_FEC_BLOCK - 8u) + 1u][2][TE_FEC_BLOCK];
    uint8_t (*data)[TE_FEC_BLOCK] = level_data[i];
    option_t opt[2];
    const size_t k = block_data(&h->l, i), n = k + parity_of(k);
    int count;
    if (i == 0 && h->l.blocks > 1) {
        first_block_t *f = h->first;
        const int sg = (left > 0) - (left < 0) + 1;
        if (f->k[sg] != k) {
            f->count[sg] = block_options(h->w, p, left, k, 0, f->opt[sg], f->data[sg]);
            f->k[sg] = k;
        }
        count = f->count[sg];
        memcpy(opt, f->opt[sg], sizeof opt);
        data = f->data[sg];
    } else {
        count = block_options(h->w, p, left, k, i + 1u == h->l.blocks, opt, data);
    }
    for (int o = 0; o < count; ++o) {
        /* spec v1.2: the first block holds the header; a decoding whose version or length field cannot belong to
         * this hypothesis's frame would fail the frame checks anyway, so the search stops there (fec.py
         * header_fits) */
        if (i == 0 && (data[o][0] != TX_PROTOCOL_VERSION ||
                       (size_t)(data[o][4] | (data[o][5] << 8)) + TX_HEADER_SIZE + TX_CRC_SIZE != h->n))
            continue;
        memcpy(h->raw + off, data[o], k);
        const size_t step = (size_t)((long)n - opt[o].kind); /* n, n - 1 after a lost byte, n + 1 after an extra */
        const size_t got = blocks_from(h, i + 1u, off + k, p + step, left - opt[o].kind);
        if (got) return got;
    }
    return 0;
}

size_t te_fec_decode(const uint8_t *body, size_t r, uint8_t *raw,
                     int (*accept)(const uint8_t *raw, size_t n, void *ctx), void *ctx)
{
    static const int8_t shifts[] = {0, 1, -1, 2, -2, 3};
    if (r < TE_FEC_MIN_BODY || r > TE_FEC_MAX_BODY) return 0;
    /* the key is the majority of the three copies; without one the body is noise (or a frame whose key
     * was hit twice: rare, and searching it would make every burst of noise expensive) */
    uint8_t key;
    if (body[0] == body[1] || body[0] == body[2]) key = body[0];
    else if (body[1] == body[2]) key = body[1];
    else return 0;
    const words_t w = {body + TE_FEC_KEYS, r - TE_FEC_KEYS, key};
    static first_block_t first; /* RAM, not the 2 KiB stack; never reentered (main loop only) */
    memset(first.k, 0, sizeof first.k);
    for (size_t h = 0; h < sizeof shifts; ++h) { /* shifts[h] bytes lost overall (negative: extra) */
        if ((long)w.m + shifts[h] <= 0) continue;
        const size_t n = raw_length_for((size_t)((long)w.m + shifts[h]));
        if (!n) continue;
        const search_t s = {&first, &w, layout_of(n), n, raw, accept, ctx};
        const size_t got = blocks_from(&s, 0, 0, 0, shifts[h]);
        if (got) return got;
    }
    return 0;
}

/* ---- the device's receiver --------------------------------------------------------------------- */

typedef struct {
    uint16_t max_payload;
    te_frame_t *frame;
} accept_t;

static int accept_frame(const uint8_t *raw, size_t n, void *ctx)
{
    const accept_t *a = ctx;
    return te_frame_parse(raw, n, a->max_payload, a->frame) == TE_OK;
}

void te_rx_init(te_rx_t *rx, uint16_t max_payload)
{
    te_decoder_init(&rx->cobs, max_payload);
    rx->body_len = 0;
}

int te_rx_feed(te_rx_t *rx, uint8_t byte, te_frame_t *frame, te_status_t *error)
{
    if (byte != TX_DELIMITER) {
        if (rx->body_len < TE_FEC_MAX_BODY) rx->body[rx->body_len] = byte;
        if (rx->body_len <= TE_FEC_MAX_BODY) rx->body_len++;
        return te_decoder_feed(&rx->cobs, byte, frame, error);
    }
    const size_t r = rx->body_len;
    rx->body_len = 0;
    const int ev = te_decoder_feed(&rx->cobs, byte, frame, error);
    if (ev != TE_FEED_ERROR || r < TE_FEC_MIN_BODY || r > TE_FEC_MAX_BODY) return ev;
    /* COBS rejected the body: its decoded bytes are no longer needed, so FEC decodes into that buffer */
    accept_t a = {rx->cobs.max_payload, frame};
    if (!te_fec_decode(rx->body, r, rx->cobs.raw, accept_frame, &a)) return ev;
    frame->fec = 1;
    return TE_FEED_FRAME;
}
