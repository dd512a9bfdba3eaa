"""A minimal reader of the kernel's BTF (``/sys/kernel/btf/vmlinux``): struct member offsets, struct sizes, enum
values and function prototypes, which is all swaprace needs to detect the layouts it probes.

Format: ``include/uapi/linux/btf.h`` (struct btf_header, struct btf_type and the per-kind trailing data). Only
the types swaprace asks for are decoded; one pass over the type section records where each named struct,
union, enum and function starts (about 150k types on a distribution kernel: well under a second natively).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

BTF_PATH = "/sys/kernel/btf/vmlinux"
_MAGIC = 0xEB9F

# BTF_KIND_* (include/uapi/linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
_EXTRA = {INT: lambda v: 4, ARRAY: lambda v: 12, STRUCT: lambda v: 12 * v, UNION: lambda v: 12 * v,
          ENUM: lambda v: 8 * v, FUNC_PROTO: lambda v: 8 * v, VAR: lambda v: 4, DATASEC: lambda v: 12 * v,
          DECL_TAG: lambda v: 4, ENUM64: lambda v: 12 * v}
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(Exception):
    pass


class Btf:
    """Parsed BTF blob (only the index; types are decoded on demand)."""

    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BtfError("too short for a BTF header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != _MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.data = data
        self.types_at = hdr_len + type_off
        self.strs_at = hdr_len + str_off
        self.str_len = str_len
        self.offsets: List[int] = [0]  # type id -> byte offset (id 0 is void)
        self.by_name: Dict[Tuple[int, str], int] = {}
        pos, end = self.types_at, self.types_at + type_len
        index_kinds = {STRUCT, UNION, ENUM, ENUM64, TYPEDEF}
        unpack = struct.unpack_from
        while pos < end:
            name_off, info = unpack("<II", data, pos)
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            self.offsets.append(pos)
            if kind in index_kinds and name_off:
                key = (kind, self._str(name_off))
                self.by_name.setdefault(key, len(self.offsets) - 1)
            extra = _EXTRA.get(kind)
            pos += 12 + (extra(vlen) if extra else 0)

    @classmethod
    def load(cls, path: str = BTF_PATH) -> "Btf":
        try:
            return cls(Path(path).read_bytes())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror or exc}") from None

    def _str(self, off: int) -> str:
        start = self.strs_at + off
        return self.data[start:self.data.index(b"\0", start)].decode("ascii", "replace")

    def _type(self, tid: int) -> Tuple[int, int, int, int, int]:
        """(kind, vlen, kflag, size_or_type, offset of the trailing data)."""
        pos = self.offsets[tid]
        _name, info, size_or_type = struct.unpack_from("<III", self.data, pos)
        return (info >> 24) & 0x1F, info & 0xFFFF, info >> 31, size_or_type, pos + 12

    def _name(self, tid: int) -> str:
        return self._str(struct.unpack_from("<I", self.data, self.offsets[tid])[0]) if tid else "void"

    def _struct_id(self, name: str) -> Optional[int]:
        return self.by_name.get((STRUCT, name)) or self.by_name.get((UNION, name))

    def struct_size(self, name: str) -> Optional[int]:
        tid = self._struct_id(name)
        return None if tid is None else self._type(tid)[3]

    def _members(self, tid: int):
        kind, vlen, kflag, _size, at = self._type(tid)
        for i in range(vlen):
            name_off, mtype, offset = struct.unpack_from("<III", self.data, at + 12 * i)
            bits = offset & 0xFFFFFF if kflag else offset
            yield (self._str(name_off) if name_off else ""), mtype, bits

    def _resolve(self, tid: int) -> int:
        while tid and self._type(tid)[0] in _MODIFIERS:
            tid = self._type(tid)[3]
        return tid

    def member_offset(self, struct_name: str, member: str) -> Optional[int]:
        """Byte offset of ``member`` in ``struct_name``, looking through anonymous structs and unions."""
        tid = self._struct_id(struct_name)
        if tid is None:
            return None
        found = self._find_member(tid, member, 0)
        return None if found is None else found // 8

    def has_member_path(self, struct_name: str, path: str) -> bool:
        """Whether ``struct_name`` has the member ``a.b.c`` (named members, anonymous ones looked through)."""
        tid = self._struct_id(struct_name)
        for name in path.split("."):
            if tid is None:
                return False
            member_tid = self._member_type(tid, name)
            if member_tid is None:
                return False
            tid = self._resolve(member_tid)
        return True

    def _member_type(self, tid: int, member: str) -> Optional[int]:
        for name, mtype, _bits in self._members(tid):
            if name == member:
                return mtype
            if not name:
                inner = self._resolve(mtype)
                if inner and self._type(inner)[0] in (STRUCT, UNION):
                    found = self._member_type(inner, member)
                    if found is not None:
                        return found
        return None

    def _find_member(self, tid: int, member: str, base_bits: int) -> Optional[int]:
        for name, mtype, bits in self._members(tid):
            if name == member:
                return base_bits + bits
            if not name:
                inner = self._resolve(mtype)
                if inner and self._type(inner)[0] in (STRUCT, UNION):
                    found = self._find_member(inner, member, base_bits + bits)
                    if found is not None:
                        return found
        return None

    def enum_value(self, enum_name: str, member: str) -> Optional[int]:
        tid = self.by_name.get((ENUM, enum_name))
        if tid is None:
            return None
        _kind, vlen, _kflag, _size, at = self._type(tid)
        for i in range(vlen):
            name_off, value = struct.unpack_from("<Ii", self.data, at + 8 * i)
            if self._str(name_off) == member:
                return value
        return None
