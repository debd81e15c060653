"""The root block device: its identity (``rootfs_mode=identity``) and dm-verity root hash
(``rootfs_mode=verity``), without udev, blkid or (where possible) dmsetup.

- the device and fs type of the root mount come from ``/proc/self/mountinfo``;
- ``/sys/dev/block/<major>:<minor>/uevent`` names the node (``DEVNAME``) and
  the partition number (``PARTN``); the parent directory is the whole disk;
- fs UUID and label are read from the superblock: ext2/3/4 (superblock at
  1024: magic 0xEF53 at +0x38, UUID at +0x68 = 0x468, label at +0x78 = 0x478),
  XFS (``XFSB``, UUID at 32, label at 108) and btrfs (superblock at 64 KiB);
- the partition UUID from the disk's GPT entry (unique partition GUID), or
  ``<MBR signature>-<partition number>`` on an MBR disk;
- the verity root hash from the device-mapper table of the root device,
  through the DM_TABLE_STATUS ioctl on ``/dev/mapper/control`` (ffi), else
  ``dmsetup table --showkeys`` when the initrd has it.

The parsers are plain functions on bytes/text (CPython runs them too); the
path prefixes ``proc``, ``sys`` and ``dev`` are parameters so tests can
point them at a prepared directory.
"""

import struct

EXT_MAGIC = 0xEF53
VERITY_PARAMS = 10  # version data hash dbs hbs blocks hash_start alg digest salt

DM_IOCTL_SIZE = 312
DM_TABLE_STATUS = 0xC138FD0C  # _IOWR(0xfd, 12, struct dm_ioctl)
DM_STATUS_TABLE_FLAG = 1 << 4
DM_BUFFER_FULL_FLAG = 1 << 8


class RootDevError(Exception):
    """The root device cannot be identified; the message says what is missing."""


def _unescape_mountinfo(field):
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``."""
    out = ""
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out += chr(int(field[i + 1:i + 4], 8))
            i += 4
        else:
            out += field[i]
            i += 1
    return out


def find_mount(mountinfo, mount_point):
    """(major, minor, fstype, source) of the last mount at ``mount_point``."""
    mount_point = mount_point.rstrip("/") or "/"
    found = None
    for line in mountinfo.split("\n"):
        f = line.split(" ")
        if len(f) < 10 or "-" not in f:
            continue
        if _unescape_mountinfo(f[4]) != mount_point:
            continue
        sep = f.index("-")
        major, _, minor = f[2].partition(":")
        found = (int(major), int(minor), f[sep + 1], _unescape_mountinfo(f[sep + 2]))
    if found is None:
        raise RootDevError("nothing is mounted at %s (per mountinfo)" % mount_point)
    return found


def parse_uevent(text):
    out = {}
    for line in text.split("\n"):
        k, _, v = line.partition("=")
        if k:
            out[k] = v
    return out


def format_uuid(raw):
    """16 bytes as the usual 8-4-4-4-12 lower-case text, bytes in order (ext4, XFS, btrfs)."""
    h = bytes(raw).hex()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def format_guid(raw):
    """A GPT GUID (first three fields little-endian) as text."""
    a, b, c = struct.unpack_from("<IHH", raw, 0)
    rest = bytes(raw[8:16]).hex()
    return "%08x-%04x-%04x-%s-%s" % (a, b, c, rest[:4], rest[4:])


def _label(raw):
    raw = bytes(raw)
    end = raw.find(b"\0")
    if end >= 0:
        raw = raw[:end]
    return raw.decode("utf-8", "replace") if hasattr(raw, "decode") else str(raw)


def superblock_identity(read_at, fstype):
    """(uuid, label) from the superblock; ``read_at(offset, size) -> bytes``."""
    if fstype in ("ext2", "ext3", "ext4"):
        sb = read_at(1024, 256)
        if len(sb) < 0x88 or struct.unpack_from("<H", sb, 0x38)[0] != EXT_MAGIC:
            raise RootDevError("no ext2/3/4 superblock magic at offset 1080")
        return format_uuid(sb[0x68:0x78]), _label(sb[0x78:0x88])
    if fstype == "xfs":
        sb = read_at(0, 120)
        if len(sb) < 120 or sb[0:4] != b"XFSB":
            raise RootDevError("no XFS superblock magic at offset 0")
        return format_uuid(sb[32:48]), _label(sb[108:120])
    if fstype == "btrfs":
        sb = read_at(0x10000, 0x22B)
        if len(sb) < 0x22B or sb[0x40:0x48] != b"_BHRfS_M":
            raise RootDevError("no btrfs superblock magic at offset 0x10040")
        return format_uuid(sb[0x20:0x30]), _label(sb[0x12B:0x22B])
    raise RootDevError("cannot read the identity of a %s file system (ext2/3/4, xfs, btrfs)"
                       % fstype)


def partition_uuid(read_at, partn, sector):
    """The partition UUID of partition ``partn`` (1-based) of a GPT or MBR disk."""
    hdr = read_at(sector, 92)
    if len(hdr) >= 92 and hdr[0:8] == b"EFI PART":
        entries_lba, count, size = struct.unpack_from("<QII", hdr, 72)
        if not 1 <= partn <= count or size < 32:
            raise RootDevError("GPT has no entry %d (%d entries)" % (partn, count))
        entry = read_at(entries_lba * sector + (partn - 1) * size, 32)
        if len(entry) < 32:
            raise RootDevError("GPT entry %d is truncated" % partn)
        return format_guid(entry[16:32])
    mbr = read_at(0, 512)
    if len(mbr) == 512 and mbr[510:512] == b"\x55\xaa":
        return "%08x-%02x" % (struct.unpack_from("<I", mbr, 440)[0], partn)
    raise RootDevError("the disk has neither a GPT nor an MBR partition table")


def verity_root_hash(table):
    """The root digest (hex) of a ``dmsetup table`` line / DM target params of type verity."""
    f = table.split()
    if len(f) >= 3 and f[2] == "verity" and f[0].isdigit():
        f = f[3:]
    elif f and f[0] == "verity":
        f = f[1:]
    if len(f) < VERITY_PARAMS:
        raise RootDevError("cannot read the verity table: %d parameters" % len(f))
    digest = f[8].lower()
    try:
        bytes.fromhex(digest)
    except ValueError:
        raise RootDevError("cannot read the verity table: root hash %r" % digest) from None
    return digest


def _read_text(path):
    with open(path, "rb") as fh:
        return fh.read().decode()


class Device:
    """Read access to a block device node (pread through libc)."""

    def __init__(self, path):
        import libc

        self.libc = libc
        self.path = path
        self.fd = libc.open_(libc.z(path), libc.O_RDONLY | libc.O_CLOEXEC, 0)
        if self.fd < 0:
            raise RootDevError("cannot open %s: %s" % (path, libc.describe(libc.errno())))

    def read_at(self, offset, size):
        if self.libc.lseek(self.fd, offset, 0) != offset:
            raise RootDevError("cannot seek %s to %d" % (self.path, offset))
        buf = bytearray(size)
        n = self.libc.read(self.fd, buf, size)
        if n < 0:
            raise RootDevError("cannot read %s at %d: %s"
                               % (self.path, offset, self.libc.describe(self.libc.errno())))
        return bytes(buf[:n])

    def close(self):
        self.libc.close(self.fd)


class RootDevice:
    """The block device mounted at ``root``, found through mountinfo and sysfs."""

    def __init__(self, root, proc="/proc", sys="/sys", dev="/dev"):
        self.major, self.minor, self.fstype, self.source = find_mount(
            _read_text(proc + "/self/mountinfo"), root)
        self.sysdir = "%s/dev/block/%d:%d" % (sys, self.major, self.minor)
        self.dev = dev
        try:
            self.uevent = parse_uevent(_read_text(self.sysdir + "/uevent"))
        except OSError:
            raise RootDevError("%s (%s) is not a block device (no %s)"
                               % (root, self.source, self.sysdir)) from None
        self.name = self.uevent.get("DEVNAME", "")
        if not self.name:
            raise RootDevError("%s/uevent has no DEVNAME" % self.sysdir)

    def identity(self):
        """(fstype, uuid, label, partuuid); partuuid is '' for a whole disk or a dm device."""
        d = Device(self.dev + "/" + self.name)
        try:
            uuid, label = superblock_identity(d.read_at, self.fstype)
        finally:
            d.close()
        partuuid = ""
        partn = self.uevent.get("PARTN")
        if partn:
            parent = parse_uevent(_read_text(self.sysdir + "/../uevent")).get("DEVNAME")
            try:
                sector = int(_read_text(self.sysdir + "/../queue/logical_block_size").strip())
            except (OSError, ValueError):
                sector = 512
            disk = Device(self.dev + "/" + parent)
            try:
                partuuid = partition_uuid(disk.read_at, int(partn), sector)
            finally:
                disk.close()
        return self.fstype, uuid, label, partuuid

    def verity_table(self):
        """The device-mapper table line of the root device (verity or not)."""
        try:
            name = _read_text(self.sysdir + "/dm/name").strip()
        except OSError:
            raise RootDevError("root is not a dm-verity device (%s, %d:%d, is not "
                               "device-mapper)" % (self.name, self.major, self.minor)) from None
        try:
            return dm_table_ioctl(self.dev + "/mapper/control", self.major, self.minor)
        except RootDevError as e:
            first = str(e)
        table = dm_table_dmsetup(self.major, self.minor)
        if table is None:
            raise RootDevError("cannot read the verity table of %s: %s; no dmsetup in the "
                               "initrd" % (name, first))
        return table

    def verity_root_hash(self):
        table = self.verity_table()
        f = table.split()
        if len(f) < 3 or f[2] != "verity":
            raise RootDevError("root is not a dm-verity device (%s has a %s target)"
                               % (self.name, f[2] if len(f) > 2 else "empty"))
        return verity_root_hash(table)


def dm_table_ioctl(control, major, minor):
    """``<start> <length> <type> <params>`` of the first target, via DM_TABLE_STATUS."""
    import libc

    size = 16384
    buf = bytearray(size)
    struct.pack_into("<IIIIIIiIII", buf, 0, 4, 0, 0, size, DM_IOCTL_SIZE, 0, 0,
                     DM_STATUS_TABLE_FLAG, 0, 0)
    dev = (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)
    struct.pack_into("<Q", buf, 40, dev)
    fd = libc.open_(libc.z(control), libc.O_RDWR | libc.O_CLOEXEC, 0)
    if fd < 0:
        raise RootDevError("cannot open %s: %s" % (control, libc.describe(libc.errno())))
    try:
        if libc.ioctl(fd, DM_TABLE_STATUS, buf) != 0:
            raise RootDevError("DM_TABLE_STATUS on %d:%d: %s"
                               % (major, minor, libc.describe(libc.errno())))
    finally:
        libc.close(fd)
    data_start, count = struct.unpack_from("<II", buf, 16)
    flags = struct.unpack_from("<I", buf, 28)[0]
    if flags & DM_BUFFER_FULL_FLAG:
        raise RootDevError("DM table of %d:%d larger than %d bytes" % (major, minor, size))
    if count < 1:
        raise RootDevError("device-mapper device %d:%d has no table" % (major, minor))
    start, length = struct.unpack_from("<QQ", buf, data_start)
    ttype = _label(buf[data_start + 24:data_start + 40])
    p = data_start + 40
    raw = bytes(buf)
    end = raw.find(b"\0", p)
    params = raw[p:end if end >= 0 else len(raw)].decode()
    return "%d %d %s %s" % (start, length, ttype, params)


def dm_table_dmsetup(major, minor):
    """``dmsetup table --showkeys`` of the device, or None without dmsetup."""
    import os

    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        try:
            os.stat(d + "/dmsetup")
        except OSError:
            continue
        out = "/run/cvmchain-dmsetup.out"
        rc = os.system("%s/dmsetup table --showkeys -j %d -m %d > %s 2>&1"
                       % (d, major, minor, out))
        text = _read_text(out)
        os.remove(out)
        if rc != 0:
            raise RootDevError("dmsetup table failed: %s" % text.strip())
        return text.strip().split("\n")[0]
    return None
