"""Extract the uncompressed ELF kernel from an xz-compressed bzImage (qemu boots it via PVH).

Under TCG the guest needs seconds just to decompress the kernel; doing it once here saves that
on every boot. Usage: python3 extract-vmlinux.py VMLINUZ VMLINUX
"""

import lzma
import sys

data = open(sys.argv[1], "rb").read()
offset = data.find(b"\xfd7zXZ\x00")
if offset < 0:
    sys.exit("no xz payload in " + sys.argv[1])
elf = lzma.LZMADecompressor().decompress(data[offset:])
if elf[:4] != b"\x7fELF":
    sys.exit("the payload is not an ELF kernel")
with open(sys.argv[2], "wb") as out:
    out.write(elf)
