"""The serial protocol, one definition mirrored once in C (docs/protocol.md).

    constants    every message type, status, limit (rendered as firmware/core/tinyexit_protocol.h)
    framing      COBS + CRC-32 frames and the streaming decoder: encode_frame(Frame) / FrameDecoder
    messages     payload layouts of every request and reply
    decide       ExitDecider: the exit test on int8 logits, exactly as a device runs it
    link         byte links both ends use: SerialLink (pyserial URL, port lock), PtyPair
The exit policies and their wire IDs are core (tinyexit.exit_policy): models, eval and the
device side all use them, and core is the one room all may import.
Imports only tinyexit core and numpy.
"""
