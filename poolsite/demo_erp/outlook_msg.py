"""Build small, real Outlook .msg files for the demo site (deterministic bytes).

A .msg is an OLE compound file (MS-CFB) whose streams hold the message's properties
(MS-OXMSG): `__substg1.0_<tag><type>` streams for strings and a
`__properties_version1.0` stream for the fixed-size ones. Attachments on a real Coupa
PO are often e-mails saved from Outlook; poolsite keeps them as they are and, when
`extract-msg` can read one, saves its body as a PDF beside it. The demo needs files
that library really reads, so this writes a minimal but valid compound file:

    header │ mini FAT │ mini stream (streams < 4096 bytes, 64-byte sectors) │
           │ directory (root + one entry per stream) │ FAT

Version 3 (512-byte sectors); everything fits the header's 109 FAT slots.
"""

from __future__ import annotations

import struct

SECTOR = 512
MINI_SECTOR = 64
MINI_CUTOFF = 4096
FREE, END_OF_CHAIN, FAT_SECTOR = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD
NO_STREAM = 0xFFFFFFFF
MINI_START = b"\xa5MS\xa5"  # the root entry's start sector, until the mini stream is placed
PT_UNICODE = "001F"


def make_msg(subject: str, body: str, sender: str = "buyer@example.com") -> bytes:
    """An Outlook message with a subject, a plain-text body and a sender."""
    strings = {"0037": subject, "1000": body, "0C1A": sender, "0C1F": sender,
               "001A": "IPM.Note"}
    streams = {f"__substg1.0_{tag}{PT_UNICODE}": text.encode("utf-16-le")
               for tag, text in strings.items()}
    streams["__properties_version1.0"] = _properties(streams)
    return compound_file(streams)


def _properties(streams: dict[str, bytes]) -> bytes:
    """The top-level property stream: a 32-byte header, then one entry per string."""
    out = bytearray(32)  # reserved, next recipient/attachment ids, counts: all zero
    for name, data in sorted(streams.items()):
        tag = int(name[-8:-4], 16) << 16 | int(name[-4:], 16)
        out += struct.pack("<IIII", tag, 0x6, len(data) + 2, 0)  # readable + writable
    return bytes(out)


def compound_file(streams: dict[str, bytes]) -> bytes:
    """A compound file holding `streams` (each under 4096 bytes) in its root storage."""
    assert all(len(data) < MINI_CUTOFF for data in streams.values()), "small streams only"
    names = sorted(streams, key=lambda n: (len(n), n.upper()))  # the directory's order
    mini, mini_fat, starts = bytearray(), [], {}
    for name in names:
        data = streams[name]
        first = len(mini) // MINI_SECTOR
        count = max(1, -(-len(data) // MINI_SECTOR))
        starts[name] = first
        mini_fat += [first + i + 1 for i in range(count - 1)] + [END_OF_CHAIN]
        mini += data.ljust(count * MINI_SECTOR, b"\0")
    mini_fat_bytes = struct.pack(f"<{len(mini_fat)}I", *mini_fat)
    directory = _directory(names, streams, starts, len(mini))

    sectors: list[bytes] = []
    fat: list[int] = []

    def place(data: bytes) -> int:
        """Append `data` as a chain of sectors; return its first sector."""
        first = len(sectors)
        count = max(1, -(-len(data) // SECTOR))
        for i in range(count):
            sectors.append(data[i * SECTOR:(i + 1) * SECTOR].ljust(SECTOR, b"\0"))
            fat.append(first + i + 1 if i < count - 1 else END_OF_CHAIN)
        return first

    mini_fat_start = place(mini_fat_bytes)
    mini_fat_sectors = len(sectors)
    mini_start = place(bytes(mini))
    directory = directory.replace(MINI_START, struct.pack("<I", mini_start), 1)
    directory_start = place(directory)
    fat_sectors = 1
    while (len(sectors) + fat_sectors) * 4 > fat_sectors * SECTOR:
        fat_sectors += 1
    fat_start = len(sectors)
    fat += [FAT_SECTOR] * fat_sectors
    table = struct.pack(f"<{len(fat)}I", *fat).ljust(fat_sectors * SECTOR, b"\xff")
    sectors += [table[i * SECTOR:(i + 1) * SECTOR] for i in range(fat_sectors)]

    difat = [fat_start + i for i in range(fat_sectors)] + [FREE] * (109 - fat_sectors)
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII", bytes.fromhex("D0CF11E0A1B11AE1"), b"\0" * 16,
        0x003E, 0x0003, 0xFFFE, 9, 6, b"\0" * 6, 0, fat_sectors, directory_start, 0,
        MINI_CUTOFF, mini_fat_start, mini_fat_sectors, END_OF_CHAIN, 0)
    header += struct.pack("<109I", *difat)
    return header + b"".join(sectors)


def _directory(names: list[str], streams: dict[str, bytes], starts: dict[str, int],
               mini_size: int) -> bytes:
    """The root entry, then each stream; siblings chained as a right-leaning tree."""
    entries = [_entry("Root Entry", 5, child=1 if names else NO_STREAM, start=None,
                      size=mini_size)]
    for index, name in enumerate(names, start=1):
        right = index + 1 if index < len(names) else NO_STREAM
        entries.append(_entry(name, 2, right=right, start=starts[name],
                              size=len(streams[name])))
    data = b"".join(entries)
    padding = (-len(data)) % SECTOR
    empty = _entry("", 0, start=0, size=0)
    return data + empty * (padding // 128)


def _entry(name: str, kind: int, *, left: int = NO_STREAM, right: int = NO_STREAM,
           child: int = NO_STREAM, start: int | None, size: int) -> bytes:
    encoded = (name.encode("utf-16-le") + b"\0\0") if name else b""
    assert len(encoded) <= 64, name
    # The root's start sector is the mini stream's, known only once it is placed.
    where = MINI_START if start is None else struct.pack("<I", start)
    return (encoded.ljust(64, b"\0") + struct.pack("<HBBIII", len(encoded), kind, 1,
                                                    left, right, child)
            + b"\0" * 16 + b"\0" * 4 + b"\0" * 16 + where + struct.pack("<II", size, 0))
