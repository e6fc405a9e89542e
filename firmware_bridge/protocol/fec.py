"""Forward error correction for frames on a line that damages bytes independently (docs/protocol.md, FEC).

    wire = [0x00]? v v v S(C) 0x00
    C    = W(RS(block_1)) || W(RS(block_2)) || ...   raw = header || payload || crc32, cut into blocks of <= 48 bytes
    W    = byte i of a codeword XOR WHITEN[i] (breaks the cyclic shift symmetry of RS codes)
    v    = the smallest byte value 1..255 absent from C;  S maps 0x00 -> v (no 0x00 inside the frame)

Each block of k bytes gets np(k) = 2*ceil(k/16) + 2 Reed-Solomon parity bytes (GF(2^8), polynomial
0x11D, first root alpha^0), so it corrects np/2 corrupted bytes, or one lost byte (an erasure at the
place found by search) plus (np-1)/2 corrupted bytes.  A lost or extra byte shifts everything after it:
the decoder guesses how many bytes the frame lost or gained overall (the frame length tells), and for a
block that does not decode where it should, tries the lost (or extra) byte at each place in it.

Decoding a body (bytes between delimiters; only after COBS failed): the key is the majority of the first
three bytes (none: not FEC); for d in SHIFTS (bytes lost overall, negative: extra) the raw length L with
codeword_size(L) = len - 3 + d, then the blocks in order (`_block_options`): the last block takes exactly
the bytes left; elsewhere, with d bytes still to find, an aligned decode that needed corrections and the
search for the lost/extra byte are both options (cost = corrections, +1 for the shift; ties: aligned),
tried depth first.  Each complete decoding is yielded; the caller's CRC-32 check picks the first good one.
A search's winner is the place with the fewest corrections (ties: the first place).

Speed: syndromes of the candidates of one block are updated in O(np) per place, not recomputed; a
candidate needs the Chien search only when Berlekamp-Massey leaves a short enough locator, and that
search is done on whole byte strings with `bytes.translate` (multiplication by a constant) and
big-integer XOR.  A 100-byte frame with one lost byte decodes in about a millisecond.

Everything here is deterministic: the C firmware (firmware/core/te_fec.c) must produce the same wire
bytes and decode the same damaged inputs to the same frames; tests/firmware_bridge/fec_vectors.json
holds vectors for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from tinyexit.firmware_bridge.protocol import constants as pc

PRIMITIVE = 0x11D
BLOCK_MAX = 48                   # data bytes per Reed-Solomon block
KEY_COPIES = 3                   # copies of the stuffing key at the start of a frame
MAX_CODEWORD_BYTES = 254         # C longer than this: the sender uses plain COBS
SHIFTS = (0, 1, -1, 2, -2, 3)    # bytes lost overall (negative: extra bytes), in the order they are tried
MIN_RAW = pc.HEADER_SIZE + pc.CRC_SIZE
# Longest body (between delimiters) worth a try: the longest frame plus the extra bytes a hypothesis allows.
MAX_BODY = KEY_COPIES + MAX_CODEWORD_BYTES - min(SHIFTS)

# --- GF(2^8) ------------------------------------------------------------------------------------------------
EXP = [0] * 512
LOG = [0] * 256
_x = 1
for _i in range(255):
    EXP[_i] = _x
    LOG[_x] = _i
    _x <<= 1
    if _x & 0x100:
        _x ^= PRIMITIVE
for _i in range(255, 512):
    EXP[_i] = EXP[_i - 255]
del _x, _i
# MUL[c] maps every byte b to c*b: bytes.translate multiplies a whole byte string by c at C speed.
MUL = [bytes(0 if c == 0 or b == 0 else EXP[LOG[c] + LOG[b]] for b in range(256)) for c in range(256)]
# INV_POWERS[m][e] = alpha^(-m*e): the m-th power of the Chien search's evaluation point for place e.
_NP_MAX = 2 * -(-BLOCK_MAX // 16) + 2
INV_POWERS = [bytes(EXP[(-m * e) % 255] for e in range(255)) for m in range(_NP_MAX + 1)]


# Whitening (spec v1.1): byte i of every codeword is XORed with WHITEN[i] on the wire.  RS codes are cyclic: a
# block that starts with 0x00 (payloads are full of them), read one place off after a lost byte, is a
# codeword again, shifted; whitened, the shifted block is as far from every codeword as noise is.
WHITEN = bytes(EXP[(7 * i * i + 11 * i + 1) % 255] for i in range(256))


def gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else EXP[LOG[a] + LOG[b]]


def gf_div(a: int, b: int) -> int:
    if b == 0:
        raise ZeroDivisionError("GF(256) division by zero")
    return 0 if a == 0 else EXP[(LOG[a] - LOG[b]) % 255]


# --- block layout ---------------------------------------------------------------------------------------------
def parity_size(k: int) -> int:
    """np(k) = 2*ceil(k/16) + 2: k=48 -> 8, k=32 -> 6, k=14 -> 4."""
    return 2 * -(-k // 16) + 2


def block_sizes(raw_len: int) -> list[int]:
    """Data bytes per block: nb = ceil(L/48) blocks, the first L % nb of them one byte longer."""
    nb = -(-raw_len // BLOCK_MAX)
    base, extra = divmod(raw_len, nb)
    return [base + 1] * extra + [base] * (nb - extra)


def codeword_size(raw_len: int) -> int:
    """E(L): codeword bytes of a raw frame of L bytes (strictly increasing in L)."""
    return sum(k + parity_size(k) for k in block_sizes(raw_len))


def wire_size(raw_len: int, lead: bool = False) -> int | None:
    """Wire bytes of an FEC frame of `raw_len` raw bytes (keys, codewords, delimiter), None if too long for FEC."""
    e = codeword_size(raw_len)
    return None if e > MAX_CODEWORD_BYTES else lead + KEY_COPIES + e + 1


_RAW_FOR_CODEWORD: dict[int, int] = {}
_L = MIN_RAW
while codeword_size(_L) <= MAX_CODEWORD_BYTES:
    _RAW_FOR_CODEWORD[codeword_size(_L)] = _L
    _L += 1
MAX_FEC_RAW = _L - 1             # 214: the longest raw frame that fits FEC (payload 204)
del _L


# --- Reed-Solomon ---------------------------------------------------------------------------------------------
_GENERATORS: dict[int, bytes] = {}


def generator(nsym: int) -> bytes:
    """g(x) = prod_{i<nsym} (x - alpha^i), highest power first (leading 1 included)."""
    g = _GENERATORS.get(nsym)
    if g is None:
        poly = [1]
        for i in range(nsym):
            root = EXP[i]
            poly = [a ^ gf_mul(b, root) for a, b in zip(poly + [0], [0] + poly)]
        g = _GENERATORS[nsym] = bytes(poly)
    return g


def rs_encode(data: bytes, nsym: int) -> bytes:
    """Systematic codeword data || (data(x)*x^nsym mod g(x)), byte 0 the highest power."""
    tail = generator(nsym)[1:]
    reg = bytearray(nsym)
    for byte in data:
        fb = byte ^ reg[0]
        del reg[0]
        reg.append(0)
        if fb:
            prod = tail.translate(MUL[fb])
            for i in range(nsym):
                reg[i] ^= prod[i]
    return bytes(data) + bytes(reg)


def syndromes(word, nsym: int) -> list[int]:
    """S_i = word(alpha^i), i < nsym (word[0] the highest power)."""
    out = []
    for i in range(nsym):
        s = 0
        if i == 0:
            for byte in word:
                s ^= byte
        else:
            for byte in word:
                s = (EXP[LOG[s] + i] if s else 0) ^ byte
        out.append(s)
    return out


def _berlekamp_massey(synd: list[int], nsym: int, erasures: list[int]) -> tuple[list[int], int]:
    """Locator Lambda (lowest power first), seeded with the erasure locator, and its register length."""
    lam = [1]
    for x in erasures:  # Gamma(x) = prod (1 + X_j x)
        lam = [a ^ gf_mul(b, x) for a, b in zip(lam + [0], [0] + lam)]
    b = list(lam)
    rho = length = len(erasures)
    for r in range(rho, nsym):
        delta = 0
        for j in range(min(len(lam), r + 1)):
            if lam[j] and synd[r - j]:
                delta ^= EXP[LOG[lam[j]] + LOG[synd[r - j]]]
        b.insert(0, 0)
        if delta == 0:
            continue
        ld = LOG[delta]
        t = lam + [0] * (len(b) - len(lam)) if len(b) > len(lam) else list(lam)
        for j, bj in enumerate(b):
            if bj:
                t[j] ^= EXP[LOG[bj] + ld]
        if 2 * length <= r + rho:
            length = r + 1 + rho - length
            inv = 255 - ld
            b = [EXP[LOG[v] + inv] if v else 0 for v in lam]
        lam = t
    return lam, length


def _roots(lam: list[int], n: int) -> list[int] | None:
    """Byte positions (0 = first byte of an n-byte word) of the roots of lam, or None unless deg-many, all inside."""
    acc = 0
    for m, coef in enumerate(lam):
        if coef:
            acc ^= int.from_bytes(INV_POWERS[m].translate(MUL[coef]), "big")
    values = acc.to_bytes(255, "big")
    degree = len(lam) - 1
    while degree and not lam[degree]:
        degree -= 1
    # values[e] = lam(alpha^-e); place e is byte n-1-e.  deg-many distinct roots, all at places < n.
    if values[:n].count(0) != degree:
        return None
    return [n - 1 - e for e in range(n) if values[e] == 0]


def _correct(word: bytes, synd: list[int], nsym: int, erasures: list[int]) -> tuple[bytes, int] | None:
    """Errors-and-erasures correction of `word` whose syndromes are `synd`; erasures as byte positions.
    Returns (corrected word, bytes changed outside the erasures) or None."""
    n = len(word)
    xs = [EXP[n - 1 - pos] for pos in erasures]
    lam, length = _berlekamp_massey(synd, nsym, xs)
    if 2 * length - len(erasures) > nsym:
        return None
    while len(lam) > 1 and not lam[-1]:
        lam.pop()
    if len(lam) - 1 != length:
        return None
    positions = _roots(lam, n)
    if positions is None:
        return None
    # Forney (first root alpha^0): e_k = X_k * Omega(X_k^-1) / Lambda'(X_k^-1), Omega = S*Lambda mod x^nsym.
    omega = [0] * nsym
    for i, s in enumerate(synd):
        if s:
            for j, lj in enumerate(lam[:nsym - i]):
                if lj:
                    omega[i + j] ^= EXP[LOG[s] + LOG[lj]]
    out = bytearray(word)
    changed = 0
    for pos in positions:
        xe = n - 1 - pos                 # X_k = alpha^xe
        xinv = (255 - xe) % 255          # log of X_k^-1
        num = 0
        for i, o in enumerate(omega):
            if o:
                num ^= EXP[(LOG[o] + i * xinv) % 255]
        den = 0
        for j in range(1, len(lam), 2):  # formal derivative: odd terms only (characteristic 2)
            if lam[j]:
                den ^= EXP[(LOG[lam[j]] + (j - 1) * xinv) % 255]
        if den == 0:
            return None
        mag = gf_mul(EXP[xe], gf_div(num, den))
        if mag:
            out[pos] ^= mag
            changed += pos not in erasures
    if any(syndromes(out, nsym)):
        return None
    return bytes(out), changed


def rs_decode(word: bytes, nsym: int, erasures: tuple[int, ...] = ()) -> tuple[bytes, int] | None:
    """(data bytes, bytes corrected outside the erasures), or None when 2*errors + erasures > nsym or no codeword fits."""
    if len(word) <= nsym or len(word) > 255:
        return None
    synd = syndromes(word, nsym)
    if not any(synd):
        return bytes(word[:len(word) - nsym]), 0
    fixed = _correct(bytes(word), synd, nsym, list(erasures))
    return None if fixed is None else (fixed[0][:len(word) - nsym], fixed[1])


# --- frames ---------------------------------------------------------------------------------------------------
def fec_encode(raw: bytes) -> bytes | None:
    """The frame body v v v S(C) (no delimiters), or None when C would exceed 254 bytes (send plain COBS)."""
    if not MIN_RAW <= len(raw) <= MAX_FEC_RAW:
        return None
    code = bytearray()
    pos = 0
    for k in block_sizes(len(raw)):
        code += _white(rs_encode(raw[pos:pos + k], parity_size(k)))
        pos += k
    present = set(code)
    key = next(v for v in range(1, 256) if v not in present)
    return bytes([key] * KEY_COPIES) + bytes(code).replace(b"\x00", bytes([key]))


@dataclass(frozen=True)
class FecDecoded:
    """One decoding of a body: the raw frame bytes and what it took."""
    raw: bytes
    corrected: int        # corrupted bytes put right
    drops: int            # lost bytes restored (erasure found by search)
    inserts: int          # extra bytes removed


def fec_candidates(body: bytes) -> Iterator[FecDecoded]:
    """Every raw frame the spec's search finds in `body`, in the spec's order (the caller checks the CRC).

    The key is the majority of body[0:3]; without two equal bytes the body is not an FEC frame (noise, or
    a frame whose key was hit twice: rare, and searching it would make every burst of noise expensive).
    """
    if len(body) < KEY_COPIES + 5 or len(body) > MAX_BODY:
        return
    a, b, c = body[0], body[1], body[2]
    key = a if a in (b, c) else b if b == c else None
    if key is None:
        return
    code = body[KEY_COPIES:].replace(bytes([key]), b"\x00")
    m = len(code)
    first: dict = {}  # the first block's options, shared by the hypotheses that read it alike
    for shift in SHIFTS:
        raw_len = _RAW_FOR_CODEWORD.get(m + shift)
        if raw_len is None:
            continue
        yield from _blocks(code, block_sizes(raw_len), 0, 0, shift, b"", 0, 0, 0, first)


def _blocks(code: bytes, sizes: list[int], index: int, p: int, left: int, raw: bytes, corrected: int,
            drops: int, inserts: int, first: dict) -> Iterator[FecDecoded]:
    """Every decoding of one hypothesis (`left` bytes still lost, negative: extra), depth first over the blocks."""
    if index == len(sizes):
        if p == len(code):
            yield FecDecoded(raw, corrected, drops, inserts)
        return
    last = index == len(sizes) - 1
    if index == 0 and not last:
        # Not the last block: its options depend on its size and on the sign of `left` only, so the shift
        # hypotheses 1, 2, 3 (and -1, -2) that give it the same size search it once (pure speed: same results).
        memo = (sizes[0], (left > 0) - (left < 0))
        if memo not in first:
            first[memo] = _block_options(code, sizes[0], 0, left, False)
        options = first[memo]
    else:
        options = _block_options(code, sizes[index], p, left, last)
    for data, fixed, step, kind in options:
        if index == 0 and not header_fits(data, sum(sizes)):
            continue
        yield from _blocks(code, sizes, index + 1, p + step, left - kind, raw + data, corrected + fixed,
                           drops + (kind > 0), inserts + (kind < 0), first)


def header_fits(first: bytes, raw_len: int) -> bool:
    """Spec v1.2 pruning: a decoding of the first block (which holds the whole header) goes on only if the header
    could belong to a frame of this hypothesis: the protocol version, and a length field equal to raw_len minus
    header and CRC.  Any other would fail the frame checks anyway (FRAME_VERSION, FRAME_LENGTH), so this changes
    no result, only the work: a wrong shift hypothesis, or noise that happens to decode, stops after one block."""
    return (first[0] == pc.PROTOCOL_VERSION
            and first[4] | first[5] << 8 == raw_len - pc.HEADER_SIZE - pc.CRC_SIZE)


def _block_options(code: bytes, k: int, p: int, left: int, last: bool) -> list[tuple[bytes, int, int, int]]:
    """(data, corrected bytes, bytes read, +1 lost / -1 extra / 0) for one block, in the order to try them.

    The last block takes exactly the bytes left.  Elsewhere, with bytes still to find, an aligned decode that
    corrected anything may have taken a lost or extra byte for a corrupted one (or the reverse): the search
    runs too, and both are options, the lower cost first (cost: corrections, +1 for the lost or extra byte;
    ties: aligned).  The caller goes back to the other option when the rest of the frame fails."""
    nsym = parity_size(k)
    n = k + nsym
    m = len(code)
    if last and m - p != n - left:
        return []
    options = []
    if p + n <= m and (left == 0 or not last):
        got = rs_decode(_white(code[p:p + n]), nsym)
        if got is not None:
            options.append((got[0], got[1], n, 0))
            if not got[1]:
                return options
    if left > 0 and p + n - 1 <= m:
        got = _search_lost(code, p, n, nsym)
        if got is not None:
            options.append((got[0], got[1], n - 1, 1))
    elif left < 0 and p + n + 1 <= m:
        got = _search_extra(code, p, n, nsym)
        if got is not None:
            options.append((got[0], got[1], n + 1, -1))
    return sorted(options, key=lambda o: o[1] + abs(o[3]))  # stable: aligned first on a tie


def _white(data: bytes) -> bytes:
    """XOR with WHITEN from place 0 (its own inverse): a block's codeword on the wire, or back."""
    n = len(data)
    return (int.from_bytes(data, "big") ^ int.from_bytes(WHITEN[:n], "big")).to_bytes(n, "big")


def _search_lost(code: bytes, p: int, n: int, nsym: int) -> tuple[bytes, int] | None:
    """A byte lost in this block: candidate j = code[p:p+j] + [0] + code[p+j:p+n-1], the 0 an erasure at j
    (candidates compared after whitening is taken off, place by place)."""
    synd = syndromes(b"\x00" + _white(b"\x00" + code[p:p + n - 1])[1:], nsym)  # j = 0: every byte one place on
    best = None
    for j in range(n):
        if j:
            # byte j-1 of the window moves from place j back to place j-1 (whitened by that place's value)
            byte = code[p + j - 1]
            old, new = byte ^ WHITEN[j], byte ^ WHITEN[j - 1]
            if old:
                lo, e = LOG[old], n - 1 - j
                for i in range(nsym):
                    synd[i] ^= EXP[(lo + i * e) % 255]
            if new:
                ln, e = LOG[new], n - j
                for i in range(nsym):
                    synd[i] ^= EXP[(ln + i * e) % 255]
        x = EXP[n - 1 - j]
        lam, length = _berlekamp_massey(synd, nsym, [x])
        if 2 * length - 1 > nsym:
            continue
        word = _white(code[p:p + j] + b"\x00" + code[p + j:p + n - 1])
        word = word[:j] + b"\x00" + word[j + 1:]
        fixed = _correct(word, list(synd), nsym, [j]) if any(synd) else (word, 0)
        if fixed is not None and (best is None or fixed[1] < best[1]):
            best = fixed[0][:n - nsym], fixed[1]
            if not fixed[1]:
                break
    return best


def _search_extra(code: bytes, p: int, n: int, nsym: int) -> tuple[bytes, int] | None:
    """An extra byte in this block: candidate j = code[p:p+n+1] without its byte j (errors only)."""
    synd = syndromes(_white(code[p + 1:p + n + 1]), nsym)  # j = 0: byte 0 removed
    best = None
    for j in range(n + 1):
        if j:
            # place j-1 now holds byte j-1 instead of byte j; the whitening of the place cancels out
            pair = code[p + j - 1] ^ code[p + j]
            if pair:
                lp, e = LOG[pair], n - j
                for i in range(nsym):
                    synd[i] ^= EXP[(lp + i * e) % 255]
        if not any(synd):
            return _white(code[p:p + j] + code[p + j + 1:p + n + 1])[:n - nsym], 0
        lam, length = _berlekamp_massey(synd, nsym, [])
        if 2 * length > nsym:
            continue
        word = _white(code[p:p + j] + code[p + j + 1:p + n + 1])
        fixed = _correct(word, list(synd), nsym, [])
        if fixed is not None and (best is None or fixed[1] < best[1]):
            best = fixed[0][:n - nsym], fixed[1]
    return best
