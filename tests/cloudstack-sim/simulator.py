#!/usr/bin/env python3
"""A strict Apache CloudStack management-server simulator (test double).

Python 3 standard library only. It answers the commands a recovery uses the
way the real server does (signatures, envelopes, error codes, async jobs,
POST uploads) and refuses what the real server refuses. See README.md.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_PAGE_SIZE = 500
UNAUTH_TEXT = "unable to verify user credentials and/or request signature"

# --------------------------------------------------------------------------
# errors


class ApiError(Exception):
    def __init__(self, errorcode, errortext, cserrorcode=None):
        super().__init__(errortext)
        self.errorcode = errorcode
        self.errortext = errortext
        self.cserrorcode = cserrorcode


def invalid(text):
    """InvalidParameterValueException: 431 / 4350."""
    return ApiError(431, text, 4350)


def missing(cmd, name):
    return ApiError(431, "Unable to execute API command %s due to missing parameter %s"
                    % (cmd.lower(), name), 9999)


def bad_value(cmd, name, value):
    return ApiError(431, ("Unable to execute API command %s due to invalid value. Invalid parameter %s "
                          "value=%s due to incorrect long value format, or entity does not exist or due to "
                          "incorrect parameter annotation for the field in api cmd class.")
                    % (cmd.lower(), name, value), 4350)


def java_urlencode(s):
    """java.net.URLEncoder.encode(s, "UTF-8") with '+' replaced by %20, as the
    server re-encodes values before checking a signature."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in ".-*_"):
            out.append(c)
        elif c == " ":
            out.append("%20")
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def now_str():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def parse_expires(value):
    """yyyy-MM-dd'T'HH:mm:ssZ (Java SimpleDateFormat), e.g. 2030-01-01T00:00:00+0000."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-])(\d{2}):?(\d{2})", value or "")
    if not m:
        return None
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    off = (int(m.group(8)) * 60 + int(m.group(9))) * (1 if m.group(7) == "+" else -1)
    try:
        t = datetime.datetime(y, mo, d, h, mi, s, tzinfo=datetime.timezone(datetime.timedelta(minutes=off)))
    except ValueError:
        return None
    return t.timestamp()


# --------------------------------------------------------------------------
# VHD facts from a streamed upload


def vhd_footer_facts(footer, head):
    """Check a VHD footer (last 512 bytes) the way file(1) + the SSVM do.
    Returns (facts, None) or (None, why)."""
    if len(footer) < 512 or footer[:8] != b"conectix":
        return None, "not a VHD file (no 'conectix' footer cookie)"
    # checksum: one's complement of the byte sum with the checksum field zeroed
    total = sum(footer[:64]) + sum(footer[68:512])
    want = struct.unpack(">I", footer[64:68])[0]
    if (~total) & 0xFFFFFFFF != want:
        return None, "not a VHD file (bad footer checksum)"
    current_size = struct.unpack(">Q", footer[48:56])[0]
    disk_type = struct.unpack(">I", footer[60:64])[0]
    kinds = {2: "fixed", 3: "dynamic", 4: "differencing"}
    if disk_type not in kinds:
        return None, "not a VHD file (disk type %d)" % disk_type
    if disk_type == 2:
        # file(1) reports a fixed VHD as "data": the server refuses it
        return None, "File type is data, only VHD files are accepted (fixed VHDs are not recognised)"
    if len(head) < 1024 or head[512:520] != b"cxsparse":
        return None, "not a VHD file (no 'cxsparse' dynamic header at offset 512)"
    return {"virtualsize": current_size, "disktype": kinds[disk_type]}, None


class UploadSink:
    """Receives a file part: hashes it, keeps its first 2 KiB and last 512
    bytes, and (unless discarding) streams it to a file."""

    def __init__(self, path, checksum_algo=None):
        self.sha = hashlib.sha256()
        # a second digest when the template/volume was registered with a checksum of another kind
        self.extra = hashlib.new(checksum_algo) if checksum_algo and checksum_algo != "sha256" else None
        self.size = 0
        self.head = b""
        self.tail = b""
        self.path = path
        self.f = open(path, "wb") if path else None

    def write(self, data):
        if not data:
            return
        self.sha.update(data)
        if self.extra is not None:
            self.extra.update(data)
        self.size += len(data)
        if len(self.head) < 2048:
            self.head += data[:2048 - len(self.head)]
        self.tail = (self.tail + data[-512:])[-512:]
        if self.f:
            self.f.write(data)

    def close(self):
        if self.f:
            self.f.close()
            self.f = None


CHECKSUM_ALGOS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def checksum_algo(checksum):
    """'{SHA-256}ab..' -> ('sha256', 'ab..'); a bare hex value is MD5 (the server's default)."""
    if not checksum:
        return None, None
    m = re.fullmatch(r"(?:\{([A-Z0-9-]+)\})?([0-9a-fA-F]+)", checksum)
    if not m:
        return None, None
    return CHECKSUM_ALGOS.get(m.group(1) or "MD5"), m.group(2).lower()


def checksum_problem(entity, sink):
    algo, want = checksum_algo(entity.get("checksum"))
    if not algo:
        return None
    got = sink.sha.hexdigest() if algo == "sha256" else sink.extra.hexdigest()
    if got != want:
        return "checksum mismatch: the %s of the uploaded file is %s, expected %s" % (algo, got, want)
    return None


class MultipartError(Exception):
    pass


def stream_multipart(rfile, length, boundary, new_file_sink):
    """Parse multipart/form-data from rfile (exactly `length` bytes) without
    holding file parts in memory. Returns (fields, files) where files is a
    list of (name, filename, sink)."""
    remaining = length
    buf = b""
    eof = False

    def fill(n=1 << 20):
        nonlocal buf, remaining, eof
        if remaining <= 0:
            eof = True
            return False
        chunk = rfile.read(min(n, remaining))
        if not chunk:
            eof = True
            return False
        remaining -= len(chunk)
        buf += chunk
        return True

    dash = b"--" + boundary
    # preamble up to the first delimiter
    while True:
        i = buf.find(dash)
        if i >= 0:
            buf = buf[i + len(dash):]
            break
        if len(buf) > 65536 or not fill():
            raise MultipartError("no multipart boundary in the body")
    fields, files = {}, []
    delim = b"\r\n" + dash
    while True:
        while len(buf) < 2 and fill():
            pass
        if buf[:2] == b"--":
            break
        if buf[:2] != b"\r\n":
            raise MultipartError("malformed multipart delimiter")
        buf = buf[2:]
        while True:
            j = buf.find(b"\r\n\r\n")
            if j >= 0:
                break
            if len(buf) > 65536 or not fill():
                raise MultipartError("truncated multipart headers")
        raw_headers, buf = buf[:j].decode("utf-8", "replace"), buf[j + 4:]
        headers = {}
        for line in raw_headers.split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        disp = headers.get("content-disposition", "")
        name_m = re.search(r'\bname="([^"]*)"', disp)
        file_m = re.search(r'\bfilename="([^"]*)"', disp)
        name = name_m.group(1) if name_m else ""
        sink = None
        value = b""
        if file_m is not None:
            sink = new_file_sink()
            files.append((name, file_m.group(1), sink))
        while True:
            k = buf.find(delim)
            if k >= 0:
                data, buf = buf[:k], buf[k + len(delim):]
                if sink:
                    sink.write(data)
                else:
                    value += data
                break
            keep = len(delim) - 1
            if len(buf) > keep:
                data, buf = buf[:-keep], buf[-keep:]
                if sink:
                    sink.write(data)
                else:
                    value += data
                    if len(value) > 1 << 20:
                        raise MultipartError("form field too large")
            if not fill():
                raise MultipartError("truncated multipart body")
        if sink:
            sink.close()
        else:
            fields[name] = value.decode("utf-8", "replace")
    # drain the epilogue
    while fill():
        buf = b""
    return fields, files


# --------------------------------------------------------------------------
# Strict checks of a whole uploaded VHD (salvage streams each disk from its chain:
# the server must see a complete, self-consistent dynamic VHD, not just a footer)


def vhd_structure_problem(path, size):
    """Read the stored upload as a VHD reader would: None, or why it is not a usable VHD.
    Footer copy at 0 = footer at the end; header checksum; BAT sized for the disk; every
    allocated block inside the file's data area, after the BAT, not overlapping another."""
    with open(path, "rb") as f:
        copy, header = f.read(512), f.read(1024)
        f.seek(size - 512)
        footer = f.read(512)
        if copy != footer:
            return "the footer copy at offset 0 differs from the footer at the end (truncated or spliced upload)"
        if header[:8] != b"cxsparse":
            return "no dynamic header at offset 512"
        total = sum(header[:36]) + sum(header[40:1024])
        if (~total) & 0xFFFFFFFF != struct.unpack(">I", header[36:40])[0]:
            return "bad dynamic header checksum"
        table = struct.unpack(">Q", header[16:24])[0]
        entries, block = struct.unpack(">II", header[28:36])
        vsize = struct.unpack(">Q", footer[48:56])[0]
        if block == 0 or entries != (vsize + block - 1) // block:
            return "BAT of %d entries for %d bytes in blocks of %d" % (entries, vsize, block)
        bitmap = ((block // 512 + 7) // 8 + 511) // 512 * 512
        f.seek(table)
        bat = f.read(entries * 4)
        if len(bat) != entries * 4:
            return "BAT past the end of the file"
        seen = set()
        for i in range(entries):
            e = struct.unpack(">I", bat[4 * i:4 * i + 4])[0]
            if e == 0xFFFFFFFF:
                continue
            off = e * 512
            if off < table + entries * 4 or off + bitmap + block > size - 512:
                return "BAT entry %d points at byte %d, outside the data area (file of %d bytes)" % (i, off, size)
            if off in seen:
                return "BAT entries share block offset %d" % off
            seen.add(off)
    return None


def cut_upload(handler, spec):
    """Fault 'upload': {'cut': {'after': N}}: read N bytes of the body, then drop the
    connection, as a failing link or proxy does. The URL is spent."""
    left = int(spec.get("after", 1 << 20))
    while left > 0:
        chunk = handler.rfile.read(min(left, 1 << 20))
        if not chunk:
            break
        left -= len(chunk)
    handler.close_connection = True
    try:
        handler.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# --------------------------------------------------------------------------
# the cloud


def new_id():
    return str(uuid.uuid4())


# command -> (required parameters, state changing?, async?)
COMMANDS = {
    "listZones": ([], False, False),
    "listDomains": ([], False, False),
    "listAccounts": ([], False, False),
    "listUsers": ([], False, False),
    "listServiceOfferings": ([], False, False),
    "listDiskOfferings": ([], False, False),
    "listOsTypes": ([], False, False),
    "listNetworks": ([], False, False),
    "listTemplates": (["templatefilter"], False, False),
    "listVolumes": ([], False, False),
    "listVirtualMachines": ([], False, False),
    "listAsyncJobs": ([], False, False),
    "queryAsyncJobResult": (["jobid"], False, False),
    "listCapabilities": ([], False, False),
    "createDomain": (["name"], True, False),
    "createAccount": (["email", "firstname", "lastname", "password", "username"], True, False),
    "createServiceOffering": (["name"], True, False),
    "registerTemplate": (["format", "hypervisor", "name", "url"], True, False),
    "getUploadParamsForTemplate": (["format", "hypervisor", "name", "zoneid"], True, False),
    "getUploadParamsForVolume": (["format", "name", "zoneid"], True, False),
    "uploadVolume": (["format", "name", "url", "zoneid"], True, True),
    "deployVirtualMachine": (["serviceofferingid", "zoneid"], True, True),
    "attachVolume": (["id", "virtualmachineid"], True, True),
    "startVirtualMachine": (["id"], True, True),
    "stopVirtualMachine": (["id"], True, True),
    "deleteTemplate": (["id"], True, True),
    "deleteVolume": (["id"], True, False),
    # resource tags and VM removal (see "resource tags" and "VM removal" below)
    "createTags": (["resourceids", "resourcetype"], True, True),
    "deleteTags": (["resourceids", "resourcetype"], True, True),
    "listTags": ([], False, False),
    "destroyVirtualMachine": (["id"], True, True),
    "expungeVirtualMachine": (["id"], True, True),
}

# response keys of commands whose envelope is not <command lower-case>response
RESPONSE_KEY = {
    "getUploadParamsForTemplate": "postuploadtemplateresponse",
    "getUploadParamsForVolume": "postuploadvolumeresponse",
}

# list command -> item key
LIST_KEY = {
    "listZones": "zone", "listDomains": "domain", "listAccounts": "account", "listUsers": "user",
    "listServiceOfferings": "serviceoffering", "listDiskOfferings": "diskoffering",
    "listOsTypes": "ostype", "listNetworks": "network", "listTemplates": "template",
    "listVolumes": "volume", "listVirtualMachines": "virtualmachine", "listAsyncJobs": "asyncjobs",
}

OS_TYPES = [
    # the guest OS names of data/cloudstack/seed-4.5.2.sql first
    ("CentOS 5.3 (64-bit)", "CentOS"),
    ("Other Linux (64-bit)", "Other"),
    ("Windows Server 2012 (64-bit)", "Windows"),
    ("Debian GNU/Linux 7(64-bit)", "Debian"),
    ("CentOS 6.5 (64-bit)", "CentOS"),
    ("CentOS 7", "CentOS"),
    ("Debian GNU/Linux 8 (64-bit)", "Debian"),
    ("Ubuntu 14.04 (64-bit)", "Ubuntu"),
    ("Other Linux (32-bit)", "Other"),
    ("Other (64-bit)", "Other"),
    ("Windows Server 2008 R2 (64-bit)", "Windows"),
]


# --------------------------------------------------------------------------
# KVM zone (issue 12): QCOW2 uploads, NFS primary storage, importVm/importVolume.
# Enabled by --kvm-pool DIR: a second zone "Zone2-KVM" (hypervisor KVM) with one
# cluster, one host, an NFS primary pool whose root directory DIR stands for the
# mounted export, and the host's local pool (DIR-local). Behaviour follows the
# 4.19-4.22 server (doc/cloudstack-facts.md): Qcow2Inspector's checks on uploads,
# importVm importsource=shared|local adopting a qcow2 from a pool's root,
# importVolume for data disks, listApis telling which parameters importVm takes.

QCOW2_KNOWN_INCOMPATIBLE = 0x1F  # dirty, corrupt, external data, compression type, extended L2


def qcow2_facts(head):
    """What the SSVM / Qcow2Inspector accept: magic, version 2 or 3, no backing
    file, no external data file, no unknown incompatible feature, not corrupt."""
    if len(head) < 72 or head[:4] != b"QFI\xfb":
        return None, "not a QCOW2 file (no 'QFI\\xfb' magic)"
    version = struct.unpack(">I", head[4:8])[0]
    if version not in (2, 3):
        return None, "QCOW2 version %d is not supported" % version
    if struct.unpack(">Q", head[8:16])[0] != 0:
        return None, "the QCOW2 file has a backing file; uploads with a backing file are refused"
    size = struct.unpack(">Q", head[24:32])[0]
    if version == 3:
        if len(head) < 104:
            return None, "not a QCOW2 file (short version 3 header)"
        incompat = struct.unpack(">Q", head[72:80])[0]
        if incompat & ~QCOW2_KNOWN_INCOMPATIBLE:
            return None, "the QCOW2 file has unknown incompatible features 0x%x" % incompat
        if incompat & 0x4:
            return None, "the QCOW2 file uses an external data file; refused"
        if incompat & 0x2:
            return None, "the QCOW2 file is marked corrupt"
    return {"virtualsize": size, "disktype": "qcow2"}, None


# optional parameters listApis shows (required ones come from COMMANDS); the server ignores
# unknown ones, so a client learns from listApis whether importVm takes MAC addresses
API_PARAMS = {
    "importVm": ["account", "clusterid", "datadiskofferinglist", "details", "diskpath", "displayname",
                 "domainid", "forced", "hostid", "hostname", "hypervisor", "importsource", "migrateallowed",
                 "name", "networkid", "nicipaddresslist", "nicnetworklist", "projectid", "serviceofferingid",
                 "storageid", "templateid", "temppath", "zoneid"],
    "importVolume": ["account", "diskofferingid", "domainid", "name", "path", "projectid", "storageid"],
    "listVolumesForImport": ["keyword", "page", "pagesize", "path", "storageid"],
    "listStoragePools": ["clusterid", "id", "keyword", "name", "page", "pagesize", "path", "scope", "zoneid"],
    "listHypervisors": ["zoneid"],
    "listClusters": ["hypervisor", "id", "name", "zoneid"],
    "listHosts": ["clusterid", "hypervisor", "id", "name", "type", "zoneid"],
    "deployVirtualMachine": ["account", "details", "displayname", "domainid", "ipaddress", "macaddress",
                             "name", "networkids", "serviceofferingid", "startvm", "templateid", "zoneid"],
    "getUploadParamsForTemplate": ["account", "checksum", "displaytext", "domainid", "format", "hypervisor",
                                   "name", "ostypeid", "zoneid"],
    "getUploadParamsForVolume": ["account", "checksum", "diskofferingid", "domainid", "format", "name",
                                 "zoneid"],
    "attachVolume": ["deviceid", "id", "virtualmachineid"],
}

KVM_COMMANDS = {
    "listHypervisors": ([], False, False),
    "listClusters": ([], False, False),
    "listHosts": ([], False, False),
    "listStoragePools": ([], False, False),
    "listVolumesForImport": (["storageid"], False, False),
    "importVm": (["clusterid", "hypervisor", "importsource", "name", "serviceofferingid", "zoneid"], True, True),
    "importVolume": (["path", "storageid"], True, True),
}

COMMANDS.update(KVM_COMMANDS)

KVM_LIST_KEYS = {
    "listHypervisors": "hypervisor", "listClusters": "cluster", "listHosts": "host",
    "listStoragePools": "storagepool", "listVolumesForImport": "volumeforimport",
}

LIST_KEY.update(KVM_LIST_KEYS)

VM_NAME_RE = r"[A-Za-z][A-Za-z0-9-]{0,62}"


class KvmZone:
    """Mixin of Cloud: the KVM zone and its commands."""

    def kvm_init(self, args):
        self.clusters, self.hosts, self.pools = [], [], []
        xen = self.zones[0]
        xen["_hypervisor"] = "XenServer"
        self.clusters.append({"id": new_id(), "name": "XenCluster1", "zoneid": xen["id"], "zonename": xen["name"],
                              "hypervisortype": "XenServer", "clustertype": "CloudManaged",
                              "allocationstate": "Enabled", "managedstate": "Managed"})
        if not getattr(args, "kvm_pool", None):
            return
        zone = {"id": new_id(), "name": "Zone2-KVM", "allocationstate": "Enabled", "networktype": "Advanced",
                "localstorageenabled": True, "securitygroupsenabled": False, "dhcpprovider": "VirtualRouter",
                "_hypervisor": "KVM"}
        self.zones.append(zone)
        cluster = {"id": new_id(), "name": "KVMCluster1", "zoneid": zone["id"], "zonename": zone["name"],
                   "hypervisortype": "KVM", "clustertype": "CloudManaged", "allocationstate": "Enabled",
                   "managedstate": "Managed"}
        self.clusters.append(cluster)
        host = {"id": new_id(), "name": "kvm1", "type": "Routing", "hypervisor": "KVM", "state": "Up",
                "resourcestate": "Enabled", "ipaddress": "10.0.0.11", "zoneid": zone["id"],
                "zonename": zone["name"], "clusterid": cluster["id"], "clustername": cluster["name"]}
        self.hosts.append(host)
        pool_dir = os.path.abspath(args.kvm_pool)
        local_dir = pool_dir.rstrip("/") + "-local"
        for d in (pool_dir, local_dir):
            os.makedirs(d, exist_ok=True)
        common = {"zoneid": zone["id"], "zonename": zone["name"], "state": "Up", "hypervisor": "KVM",
                  "disksizetotal": 2 << 40, "disksizeallocated": 0, "created": now_str()}
        self.pools.append(dict(common, id=new_id(), name="kvm-nfs-primary", type="NetworkFilesystem",
                               path="/export/primary", ipaddress="10.0.0.5", scope="CLUSTER",
                               clusterid=cluster["id"], clustername=cluster["name"], _dir=pool_dir))
        self.pools.append(dict(common, id=new_id(), name="kvm1-local", type="Filesystem",
                               path="/var/lib/libvirt/images", ipaddress="10.0.0.11", scope="HOST",
                               clusterid=cluster["id"], clustername=cluster["name"], hostid=host["id"],
                               hostname=host["name"], _dir=local_dir))
        self.networks.append({"id": new_id(), "name": "kvmGuestNetwork", "displaytext": "KVM zone guest network",
                              "zoneid": zone["id"], "zonename": zone["name"], "type": "Shared",
                              "state": "Setup", "cidr": "10.2.2.0/24", "gateway": "10.2.2.1",
                              "domainid": self.domains[0]["id"], "domain": "ROOT", "acltype": "Domain",
                              "isdefault": True, "networkofferingname": "DefaultSharedNetworkOffering",
                              "next_ip": 10})

    # ---- formats by zone

    def zone_hypervisor(self, zone):
        return zone.get("_hypervisor", "XenServer")

    def disk_format(self, zone):
        return "QCOW2" if self.zone_hypervisor(zone) == "KVM" else "VHD"

    def check_zone_format(self, cmd, p, zone, hypervisor=True):
        fmt = p["format"].upper()
        hv = self.zone_hypervisor(zone)
        if fmt not in ("VHD", "QCOW2"):
            raise invalid("Format %s is not supported by this simulator (XenServer: VHD, KVM: QCOW2)" % p["format"])
        want = "XenServer" if fmt == "VHD" else "KVM"
        if hv != want:
            raise invalid("The %s hypervisor supported for %s file format, is not found on the zone" % (want, fmt))
        if hypervisor and p["hypervisor"].lower() != hv.lower():
            raise invalid("Hypervisor %s is not supported in zone %s (%s)" % (p["hypervisor"], zone["name"], hv))

    def disk_facts(self, entity, head, tail):
        """(facts, why) for an uploaded or downloaded file of this template/volume."""
        if entity.get("format") == "QCOW2":
            return qcow2_facts(head)
        return vhd_footer_facts(tail, head)

    def file_suffix(self, entity):
        return ".qcow2" if entity.get("format") == "QCOW2" else ".vhd"

    # ---- lists

    def cmd_listHypervisors(self, cmd, p, caller):
        zones = [self.ref(cmd, self.zones, p, "zoneid")] if p.get("zoneid") else self.zones
        names = sorted({self.zone_hypervisor(z) for z in zones})
        return {"count": len(names), "hypervisor": [{"name": n} for n in names]}

    def cmd_listClusters(self, cmd, p, caller):
        items = self.by(list(self.clusters), p, "id", "name", "zoneid")
        if p.get("hypervisor"):
            items = [c for c in items if c["hypervisortype"].lower() == p["hypervisor"].lower()]
        return self.page(cmd, p, items, "cluster")

    def cmd_listHosts(self, cmd, p, caller):
        items = self.by(list(self.hosts), p, "id", "name", "zoneid", "clusterid", "type")
        return self.page(cmd, p, items, "host")

    def pool_view(self, sp):
        return {k: v for k, v in sp.items() if not k.startswith("_")}

    def cmd_listStoragePools(self, cmd, p, caller):
        items = self.by(list(self.pools), p, "id", "name", "zoneid", "clusterid", "path")
        if p.get("scope"):
            items = [x for x in items if x["scope"] == p["scope"].upper()]
        return self.page(cmd, p, [self.pool_view(x) for x in items], "storagepool")

    def pool_file(self, sp, path):
        """The file `path` names in the pool's root, or None: only the root directory counts."""
        if not path or "/" in path or path in (".", ".."):
            return None
        f = os.path.join(sp["_dir"], path)
        return f if os.path.isfile(f) else None

    def file_in_use(self, sp, path):
        return any(v.get("storageid") == sp["id"] and v.get("path") == path for v in self.volumes)

    def cmd_listVolumesForImport(self, cmd, p, caller):
        sp = self.ref(cmd, self.pools, p, "storageid", required=True)
        items = []
        for name in sorted(os.listdir(sp["_dir"])):
            f = self.pool_file(sp, name)
            if f is None or self.file_in_use(sp, name) or (p.get("path") and p["path"] != name):
                continue
            with open(f, "rb") as fh:
                facts, _ = qcow2_facts(fh.read(2048))
            items.append({"name": name, "path": name, "fullpath": os.path.join(sp["path"], name),
                          "format": "QCOW2" if facts else "RAW", "size": os.path.getsize(f),
                          "virtualsize": facts["virtualsize"] if facts else os.path.getsize(f),
                          "storageid": sp["id"], "storage": sp["name"], "storagetype": sp["type"]})
        return self.page(cmd, p, items, "volumeforimport")

    # ---- adoption of files already in a pool

    def adopt_file(self, cmd, sp, path):
        """The checks importVm/importVolume make on a pool file; returns its facts."""
        f = self.pool_file(sp, path)
        facts = None
        if f is not None:
            with open(f, "rb") as fh:
                facts, _why = qcow2_facts(fh.read(2048))
        if facts is None:
            raise ApiError(530, "Disk not found or is invalid: %s on storage pool %s" % (path, sp["name"]), 4250)
        if self.file_in_use(sp, path):
            raise invalid("Disk image is already in use: %s" % path)
        return facts

    def import_pool(self, cmd, p, zone):
        src = p["importsource"].lower()
        if src not in ("unmanaged", "external", "local", "shared"):
            raise invalid("Unsupported import source: %s" % p["importsource"])
        if src in ("unmanaged", "external"):
            raise invalid("Import source %s needs a host this simulator does not have" % src)
        if not p.get("diskpath"):
            raise invalid("Disk path is required for import from %s storage" % src)
        if src == "shared":
            sp = self.ref(cmd, self.pools, p, "storageid")
            if sp is None:
                raise invalid("Storage pool is required for import from shared storage")
            if sp["type"] not in ("NetworkFilesystem", "SharedMountPoint"):
                raise invalid("Storage pool %s is not shared (NFS or SharedMountPoint)" % sp["name"])
        else:
            host = self.ref(cmd, self.hosts, p, "hostid")
            if host is None:
                raise invalid("Host is required for import from local storage")
            sp = next((x for x in self.pools if x.get("hostid") == host["id"]), None)
            if p.get("storageid"):
                sp = self.ref(cmd, self.pools, p, "storageid")
                if sp.get("hostid") != host["id"]:
                    raise invalid("Storage pool %s is not local to host %s" % (sp["name"], host["name"]))
        if sp["zoneid"] != zone["id"]:
            raise invalid("Storage pool %s is not in zone %s" % (sp["name"], zone["name"]))
        return sp

    def import_nic(self, cmd, p, zone):
        nets = parse_map(cmd, p, "nicnetworklist")
        nid = p.get("networkid") or (nets[0].get("network") if nets else None)
        if nid is None:
            raise invalid("Network is required for import from disk: networkid or nicnetworklist")
        net = self.find(self.networks, nid)
        if net is None or net["zoneid"] != zone["id"]:
            raise invalid("Network ID: %s is invalid for zone %s" % (nid, zone["name"]))
        ips = parse_map(cmd, p, "nicipaddresslist")
        ip = ips[0].get("ip4Address") if ips else None
        if ip is not None and ip != "auto" and not re.fullmatch(r"(\d{1,3}\.){3}\d{1,3}", ip):
            raise invalid("IP address '%s' for NIC ID: %s is invalid" % (ip, ips[0].get("nic")))
        mac = None
        if self.args.importvm_mac:
            macs = parse_map(cmd, p, "nicmacaddresslist")
            mac = macs[0].get("macAddress") if macs else None
            if mac is not None:
                mac = self.check_mac(mac)
        return net, (None if ip == "auto" else ip), mac

    def check_mac(self, mac):
        m = (mac or "").lower()
        if not re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", m) or int(m[:2], 16) & 1:
            raise invalid("Invalid MAC address: %s" % mac)
        if any(n["macaddress"] == m for vm in self.vms for n in vm["nic"]):
            raise invalid("The MAC address %s is already in use" % m)
        return m

    def new_nic(self, net, ip, mac):
        if ip is not None:
            if any(n["ipaddress"] == ip and n["networkid"] == net["id"] for vm in self.vms for n in vm["nic"]):
                raise ApiError(530, "The IP address %s is already in use in network %s" % (ip, net["name"]), 4250)
        else:
            ip = "%s.%d" % (net["cidr"].rsplit(".", 1)[0], net["next_ip"])
            net["next_ip"] += 1
        mac = mac or "02:00:%02x:%02x:00:01" % (len(self.vms) // 256 % 256, len(self.vms) % 256)
        return {"id": new_id(), "networkid": net["id"], "networkname": net["name"], "ipaddress": ip,
                "isdefault": True, "macaddress": mac}

    def cmd_importVm(self, cmd, p, caller):
        zone = self.ref(cmd, self.zones, p, "zoneid", required=True)
        cluster = self.ref(cmd, self.clusters, p, "clusterid", required=True)
        so = self.ref(cmd, self.service_offerings, p, "serviceofferingid", required=True)
        if p["hypervisor"].lower() != "kvm":
            raise invalid("Importing an instance from disk is supported for KVM only, not %s" % p["hypervisor"])
        if cluster["zoneid"] != zone["id"] or cluster["hypervisortype"] != "KVM":
            raise invalid("Cluster %s is not a KVM cluster of zone %s" % (cluster["name"], zone["name"]))
        owner = self.owner(cmd, p, caller)
        name = p["name"]
        if not re.fullmatch(VM_NAME_RE, name) or name.endswith("-"):
            raise invalid("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits "
                          "'0' through '9', and the hyphen ('-'), must be between 1 and 63 characters long, "
                          "and can't start or end with \"-\" and can't start with digit")
        for vm in self.vms:
            if vm["name"].lower() == name.lower() and vm["state"] not in ("Expunging", "Destroyed"):
                raise invalid("A VM with the name %s already exists" % name)
        if so["iscustomized"]:
            raise invalid("A custom service offering needs details; use a fixed offering for imports")
        sp = self.import_pool(cmd, p, zone)
        net, ip, mac = self.import_nic(cmd, p, zone)
        path = p["diskpath"]
        facts = self.adopt_file(cmd, sp, path)
        nic = self.new_nic(net, ip, mac)
        vmid = new_id()
        vm = {"id": vmid, "name": name, "displayname": p.get("displayname") or name, "state": "Stopped",
              "zoneid": zone["id"], "zonename": zone["name"], "serviceofferingid": so["id"],
              "serviceofferingname": so["name"], "templatename": "kvm-default-vm-import-dummy-template",
              "cpunumber": so.get("cpunumber"), "cpuspeed": so.get("cpuspeed"), "memory": so.get("memory"),
              "hypervisor": "KVM", "created": now_str(), "_accountid": owner["id"], "nic": [nic],
              "_imported": {"storageid": sp["id"], "path": path}}
        vm.update(self.owner_fields(owner))
        root = {"id": new_id(), "name": "ROOT-" + vmid[:8], "type": "ROOT", "state": "Ready", "format": "QCOW2",
                "hypervisor": "KVM", "virtualmachineid": vmid, "vmname": name, "deviceid": 0,
                "zoneid": zone["id"], "zonename": zone["name"], "size": facts["virtualsize"],
                "storageid": sp["id"], "storage": sp["name"], "path": path, "created": now_str(),
                "_accountid": owner["id"]}
        root.update(self.owner_fields(owner))
        # the pool file is taken now: a second import of it is refused while the job runs
        self.volumes.append(root)
        self.vms.append(vm)

        def finish():
            return {"virtualmachine": self.vm_view(vm)}
        return {"jobid": self.new_job(cmd, caller, "VirtualMachine", vmid, finish)["jobid"]}

    def cmd_importVolume(self, cmd, p, caller):
        sp = self.ref(cmd, self.pools, p, "storageid", required=True)
        zone = self.find(self.zones, sp["zoneid"])
        owner = self.owner(cmd, p, caller)
        path = p["path"]
        facts = self.adopt_file(cmd, sp, path)
        do = self.ref(cmd, self.disk_offerings, p, "diskofferingid") or \
            next(d for d in self.disk_offerings if d["iscustomized"])
        gib = (facts["virtualsize"] + (1 << 30) - 1) >> 30
        if do["iscustomized"] and not 1 <= gib <= 1024:
            raise invalid("Volume size %d GB is out of the custom disk offering's range 1-1024 GB" % gib)
        if not do["iscustomized"] and do["disksize"] << 30 != facts["virtualsize"]:
            raise invalid("Disk offering %s has size %d GB but the disk is %d bytes"
                          % (do["name"], do["disksize"], facts["virtualsize"]))
        v = {"id": new_id(), "name": p.get("name") or path, "type": "DATADISK", "state": "Ready",
             "format": "QCOW2", "hypervisor": "KVM", "zoneid": zone["id"], "zonename": zone["name"],
             "size": facts["virtualsize"], "storageid": sp["id"], "storage": sp["name"], "path": path,
             "diskofferingid": do["id"], "diskofferingname": do["name"], "created": now_str(),
             "_accountid": owner["id"]}
        v.update(self.owner_fields(owner))
        self.volumes.append(v)

        def finish():
            return {"volume": self.volume_view(v)}
        return {"jobid": self.new_job(cmd, caller, "Volume", v["id"], finish)["jobid"]}

    def kvm_dump(self):
        return {"clusters": list(self.clusters), "hosts": list(self.hosts),
                "storage_pools": [dict(self.pool_view(x), dir=x["_dir"]) for x in self.pools]}


class Cloud(KvmZone):
    def __init__(self, args):
        self.lock = threading.RLock()
        self.args = args
        self.upload_key = os.urandom(20)
        self.faults = {}
        self.job_polls = args.job_polls
        self.template_polls = args.template_polls
        self.zones, self.domains, self.accounts, self.users = [], [], [], []
        self.service_offerings, self.disk_offerings, self.os_types = [], [], []
        self.networks, self.templates, self.volumes, self.vms, self.jobs = [], [], [], [], []
        self.removed_templates, self.removed_volumes, self.removed_vms = [], [], []
        self.uploads = {}  # token -> {"kind", "id", "expires", "used", "signature", "metadata", "host"}
        self.base_url = None
        self.calls = {}
        zone = {"id": new_id(), "name": "Zone1", "allocationstate": "Enabled", "networktype": "Advanced",
                "localstorageenabled": False, "securitygroupsenabled": False, "dhcpprovider": "VirtualRouter"}
        self.zones.append(zone)
        root = {"id": new_id(), "name": "ROOT", "path": "ROOT", "level": 0, "parentdomainid": None,
                "parentdomainname": None, "created": now_str()}
        self.domains.append(root)
        admin = self._new_account("admin", 1, root, "admin", "admin@example.com", "Admin", "User",
                                  args.apikey, args.secretkey)
        self.admin = admin
        for name, cpu, speed, mem, custom in [("Small Instance", 1, 500, 512, False),
                                              ("Medium Instance", 1, 1000, 1024, False),
                                              ("Large Instance", 2, 2000, 4096, False),
                                              ("Custom Compute", None, None, None, True)]:
            self.service_offerings.append(self._service_offering(name, cpu, speed, mem, custom, name))
        for name, size, custom in [("Small", 5, False), ("Medium", 20, False), ("Large", 100, False),
                                   ("Custom", 0, True)]:
            self.disk_offerings.append({"id": new_id(), "name": name, "displaytext": "%s Disk" % name,
                                        "disksize": size, "iscustomized": custom, "storagetype": "shared",
                                        "created": now_str()})
        for i, (desc, cat) in enumerate(OS_TYPES):
            self.os_types.append({"id": new_id(), "description": desc, "oscategoryid": "cat-" + cat,
                                  "oscategoryname": cat, "isuserdefined": False})
        self.networks.append({"id": new_id(), "name": "defaultGuestNetwork", "displaytext": "default guest network",
                              "zoneid": zone["id"], "zonename": zone["name"], "type": "Shared",
                              "state": "Setup", "cidr": "10.1.1.0/24", "gateway": "10.1.1.1",
                              "domainid": root["id"], "domain": "ROOT", "acltype": "Domain",
                              "isdefault": True, "networkofferingname": "DefaultSharedNetworkOffering",
                              "next_ip": 10})
        self.kvm_init(args)

    # ---- helpers

    def _service_offering(self, name, cpu, speed, mem, custom, displaytext):
        so = {"id": new_id(), "name": name, "displaytext": displaytext, "iscustomized": custom,
              "storagetype": "shared", "offerha": False, "limitcpuuse": False, "issystem": False,
              "defaultuse": False, "created": now_str()}
        if not custom:
            so.update({"cpunumber": cpu, "cpuspeed": speed, "memory": mem})
        return so

    def _new_account(self, name, acct_type, domain, username, email, first, last, apikey=None, secretkey=None):
        acct = {"id": new_id(), "name": name, "accounttype": acct_type, "domainid": domain["id"],
                "domain": domain["name"], "domainpath": domain["path"], "state": "enabled",
                "created": now_str(), "roletype": {0: "User", 1: "Admin", 2: "DomainAdmin"}.get(acct_type, "User")}
        self.accounts.append(acct)
        user = {"id": new_id(), "username": username, "email": email, "firstname": first, "lastname": last,
                "accountid": acct["id"], "account": name, "domainid": domain["id"], "domain": domain["name"],
                "accounttype": acct_type, "state": "enabled", "created": now_str(),
                "apikey": apikey, "secretkey": secretkey}
        self.users.append(user)
        acct["user"] = [user]
        return acct

    def find(self, coll, ident):
        for x in coll:
            if x["id"] == ident:
                return x
        return None

    def domain_of(self, did):
        return self.find(self.domains, did)

    def owner(self, cmd, p, caller):
        """account + domainid act on behalf of another account (finalizeOwner)."""
        acct, did = p.get("account"), p.get("domainid")
        if did is not None:
            dom = self.domain_of(did)
            if dom is None:
                raise bad_value(cmd, "domainid", did)
        if acct is None:
            if did is not None:
                # a domain alone: the caller's account must be in it
                if caller["domainid"] != did:
                    raise invalid("Unable to find account for domain id=%s: specify an account" % did)
            return caller
        if did is None:
            raise invalid("Account name and domain id must be specified together")
        for a in self.accounts:
            if a["name"] == acct and a["domainid"] == did:
                return a
        raise invalid("Unable to find account %s in domain id=%s" % (acct, did))

    def ref(self, cmd, coll, p, name, required=False):
        v = p.get(name)
        if v is None:
            if required:
                raise missing(cmd, name)
            return None
        x = self.find(coll, v)
        if x is None:
            raise bad_value(cmd, name, v)
        return x

    def check_int(self, cmd, p, name):
        v = p.get(name)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise bad_value(cmd, name, v)

    def check_bool(self, cmd, p, name, default=None):
        v = p.get(name)
        if v is None:
            return default
        # Boolean.valueOf (ParamProcessWorker.setFieldValue): anything but "true" is false
        return v.lower() == "true"

    def owner_fields(self, acct):
        dom = self.domain_of(acct["domainid"])
        return {"account": acct["name"], "domainid": dom["id"], "domain": dom["name"], "domainpath": dom["path"]}

    def new_job(self, cmd, caller, instancetype, instanceid, finish, fail_check=None):
        """An async job that stays pending for `job_polls` queries, then runs
        `finish()` (returns the jobresult dict or raises ApiError)."""
        job = {"jobid": new_id(), "cmd": cmd, "userid": caller["user"][0]["id"], "accountid": caller["id"],
               "jobstatus": 0, "jobprocstatus": 0, "jobresultcode": 0, "jobresulttype": "object",
               "jobinstancetype": instancetype, "jobinstanceid": instanceid, "created": now_str(),
               "polls_left": self.job_polls, "finish": finish}
        fault = self.take_fault("job_fail", cmd)
        if fault is not None:
            job["forced_failure"] = fault
        self.jobs.append(job)
        return job

    def take_fault(self, kind, cmd):
        """Consume one occurrence of a fault for cmd; returns its spec or None."""
        table = self.faults.get(kind) or {}
        spec = table.get(cmd)
        if spec is None:
            return None
        if isinstance(spec, dict):
            count = spec.get("count", 1)
            if count == 0:
                return None
            if count > 0:
                spec["count"] = count - 1
            return spec
        if isinstance(spec, bool):
            return {} if spec else None
        if isinstance(spec, (int, float)):
            if spec <= 0:
                return None
            table[cmd] = spec - 1
            return {}
        return None

    def run_job(self, job):
        fin = job.pop("finish", None)
        forced = job.pop("forced_failure", None)
        on_fail = job.pop("on_fail", None)
        try:
            if forced is not None:
                if on_fail:
                    on_fail()
                raise ApiError(forced.get("errorcode", 530), forced.get("errortext", "Injected job failure"),
                               forced.get("cserrorcode", 4250))
            result = fin() if fin else {}
            job["jobstatus"] = 1
            job["jobresult"] = result
        except RetryLater:
            job["finish"] = fin
            return
        except ApiError as e:
            job["jobstatus"] = 2
            job["jobresultcode"] = 530
            job["jobresult"] = {"errorcode": e.errorcode, "errortext": e.errortext}
        job["completed"] = now_str()

    # ---- views

    def domain_view(self, d):
        v = {k: d[k] for k in ("id", "name", "path", "level", "created")}
        if d["parentdomainid"]:
            v["parentdomainid"] = d["parentdomainid"]
            v["parentdomainname"] = d["parentdomainname"]
        v["haschild"] = any(x["parentdomainid"] == d["id"] for x in self.domains)
        return v

    def account_view(self, a):
        v = dict(a)
        v["user"] = [self.user_view(u) for u in a["user"]]
        return v

    def user_view(self, u):
        return {k: v for k, v in u.items() if k not in ("apikey", "secretkey") and not k.startswith("_")}

    def template_view(self, t):
        v = {k: x for k, x in t.items() if not k.startswith("_")}
        v["tags"] = [dict(x) for x in t.get("_tags", [])]
        return v

    def volume_view(self, v):
        out = {k: x for k, x in v.items() if not k.startswith("_")}
        out["tags"] = [dict(x) for x in v.get("_tags", [])]
        return out

    def vm_view(self, vm):
        v = {k: x for k, x in vm.items() if not k.startswith("_")}
        v["tags"] = [dict(x) for x in vm.get("_tags", [])]
        return v

    # ---- dispatch

    def execute(self, cmd, p, caller):
        fn = getattr(self, "cmd_" + cmd)
        return fn(cmd, p, caller)

    # ---- list commands

    def page(self, cmd, p, items, key):
        ps = self.check_int(cmd, p, "pagesize")
        pg = self.check_int(cmd, p, "page")
        kw = p.get("keyword")
        if kw:
            items = [x for x in items if kw.lower() in str(x.get("name", x.get("description", ""))).lower()]
        if ps is None:
            ps = MAX_PAGE_SIZE
        if ps > MAX_PAGE_SIZE:
            raise invalid("Page size can't exceed max allowed page size value: %d" % MAX_PAGE_SIZE)
        if ps < 1 and ps != -1:
            raise invalid("Page size %d is invalid" % ps)
        if pg is None:
            pg = 1
        if pg < 1:
            raise invalid("Page number %d is invalid" % pg)
        total = len(items)
        rows = items[(pg - 1) * ps: pg * ps]
        if not rows:
            # an empty page or an empty list is {} (no count, no array)
            return {}
        return {"count": total, key: rows}

    def visible(self, cmd, p, caller, items):
        """listall/account/domainid semantics for account-owned resources."""
        listall = self.check_bool(cmd, p, "listall", False)
        acct = p.get("account")
        did = p.get("domainid")
        if acct is not None or did is not None:
            if acct is not None:
                owner = self.owner(cmd, p, caller)
                return [x for x in items if x.get("_accountid") == owner["id"]]
            if self.domain_of(did) is None:
                raise bad_value(cmd, "domainid", did)
            return [x for x in items if x.get("domainid") == did]
        if listall or p.get("id"):
            return items
        return [x for x in items if x.get("_accountid") == caller["id"]]

    @staticmethod
    def by(items, p, *names):
        for n in names:
            v = p.get(n)
            if v is not None:
                items = [x for x in items if x.get(n) == v]
        return items

    @staticmethod
    def like(items, p, name, field=None):
        """SQL LIKE '%v%' (case-insensitive collation), as the server filters
        listVirtualMachines/listVolumes name and listOsTypes description."""
        v = p.get(name)
        if v is None:
            return items
        return [x for x in items if v.lower() in str(x.get(field or name, "")).lower()]

    def cmd_listCapabilities(self, cmd, p, caller):
        return {"capability": {"cloudstackversion": "4.22.1.0-sim", "apilimitmax": 0, "apilimitinterval": 1,
                               "allowusercreateprojects": True, "customdiskofferingmaxsize": 1024}}

    def cmd_listZones(self, cmd, p, caller):
        return self.page(cmd, p, self.by(list(self.zones), p, "id", "name"), "zone")

    def cmd_listDomains(self, cmd, p, caller):
        items = list(self.domains)
        if not self.check_bool(cmd, p, "listall", False) and not p.get("id"):
            # without listall the caller sees its own domain only
            items = [d for d in items if d["id"] == caller["domainid"]]
        items = self.by(items, p, "id", "name")
        lvl = self.check_int(cmd, p, "level")
        if lvl is not None:
            items = [d for d in items if d["level"] == lvl]
        return self.page(cmd, p, [self.domain_view(d) for d in items], "domain")

    def cmd_listAccounts(self, cmd, p, caller):
        items = list(self.accounts)
        listall = self.check_bool(cmd, p, "listall", False)
        did = p.get("domainid")
        if did is not None:
            if self.domain_of(did) is None:
                raise bad_value(cmd, "domainid", did)
            items = [a for a in items if a["domainid"] == did]
        elif not listall and not p.get("id"):
            items = [a for a in items if a["id"] == caller["id"]]
        items = self.by(items, p, "id", "name")
        if p.get("accounttype") is not None:
            at = self.check_int(cmd, p, "accounttype")
            items = [a for a in items if a["accounttype"] == at]
        return self.page(cmd, p, [self.account_view(a) for a in items], "account")

    def cmd_listUsers(self, cmd, p, caller):
        items = self.by(list(self.users), p, "id", "username", "domainid", "account")
        # as 4.x servers do for admins: listUsers shows the API keys
        return self.page(cmd, p, [dict(self.user_view(u), apikey=u["apikey"], secretkey=u["secretkey"])
                                  for u in items], "user")

    def cmd_listServiceOfferings(self, cmd, p, caller):
        return self.page(cmd, p, self.by(list(self.service_offerings), p, "id", "name"), "serviceoffering")

    def cmd_listDiskOfferings(self, cmd, p, caller):
        return self.page(cmd, p, self.by(list(self.disk_offerings), p, "id", "name"), "diskoffering")

    def cmd_listOsTypes(self, cmd, p, caller):
        items = self.like(self.by(list(self.os_types), p, "id"), p, "description")
        return self.page(cmd, p, items, "ostype")

    def cmd_listNetworks(self, cmd, p, caller):
        items = self.by(list(self.networks), p, "id", "name", "zoneid")
        return self.page(cmd, p, [{k: v for k, v in n.items() if k != "next_ip"} for n in items], "network")

    def cmd_listTemplates(self, cmd, p, caller):
        flt = p["templatefilter"]
        if flt not in ("featured", "self", "selfexecutable", "sharedexecutable", "executable", "community", "all"):
            raise invalid("Unable to execute API command listtemplates due to invalid value. Invalid parameter "
                          "templatefilter value=%s" % flt)
        items = list(self.templates)
        if p.get("account") is not None or p.get("domainid") is not None:
            items = self.visible(cmd, p, caller, items)
        elif flt in ("self", "selfexecutable"):
            items = [t for t in items if t["_accountid"] == caller["id"]]
        elif flt in ("featured",):
            items = [t for t in items if t.get("isfeatured")]
        elif flt == "community":
            items = [t for t in items if t.get("ispublic") and not t.get("isfeatured")]
        items = self.tagged(cmd, p, self.by(items, p, "id", "name", "zoneid"))
        for t in items:
            self.advance_template(t)
        return self.page(cmd, p, [self.template_view(t) for t in items], "template")

    def cmd_listVolumes(self, cmd, p, caller):
        items = self.visible(cmd, p, caller, list(self.volumes))
        items = self.like(self.by(items, p, "id", "virtualmachineid", "type", "zoneid"), p, "name")
        items = self.tagged(cmd, p, items)
        for v in items:
            self.advance_volume(v)
        return self.page(cmd, p, [self.volume_view(v) for v in items], "volume")

    def cmd_listVirtualMachines(self, cmd, p, caller):
        items = self.visible(cmd, p, caller, list(self.vms))
        items = self.like(self.by(items, p, "id", "state", "zoneid"), p, "name")
        if p.get("state") is None and p.get("id") is None:
            # as the server: expunged VMs are gone; Destroyed ones only when asked for
            items = [v for v in items if v["state"] not in ("Destroyed", "Expunging")]
        items = self.tagged(cmd, p, items)
        return self.page(cmd, p, [self.vm_view(v) for v in items], "virtualmachine")

    def cmd_listAsyncJobs(self, cmd, p, caller):
        items = [j for j in self.jobs if j["accountid"] == caller["id"]]
        return self.page(cmd, p, [self.job_view(j) for j in items], "asyncjobs")

    def job_view(self, j):
        v = {k: x for k, x in j.items() if k not in ("finish", "forced_failure", "polls_left", "on_fail")}
        if j["jobstatus"] == 0:
            v.pop("jobresult", None)
        return v

    def cmd_queryAsyncJobResult(self, cmd, p, caller):
        job = None
        for j in self.jobs:
            if j["jobid"] == p["jobid"]:
                job = j
        if job is None:
            raise bad_value(cmd, "jobid", p["jobid"])
        if job["accountid"] != caller["id"] and caller["accounttype"] != 1:
            raise ApiError(531, "Permission denied for job %s" % p["jobid"], 4365)
        if job["jobstatus"] == 0:
            slow = self.faults.get("job_pending", {}).get(job["cmd"])
            if job["polls_left"] > 0 or slow:
                job["polls_left"] -= 1
            else:
                self.run_job(job)
        return self.job_view(job)

    # ---- create commands

    def cmd_createDomain(self, cmd, p, caller):
        parent = self.ref(cmd, self.domains, p, "parentdomainid") or self.domain_of(caller["domainid"])
        name = p["name"]
        for d in self.domains:
            if d["parentdomainid"] == parent["id"] and d["name"].lower() == name.lower():
                raise invalid("Domain with name %s already exists for the parent id=%s" % (name, parent["id"]))
        d = {"id": new_id(), "name": name, "path": parent["path"] + "/" + name, "level": parent["level"] + 1,
             "parentdomainid": parent["id"], "parentdomainname": parent["name"], "created": now_str()}
        if p.get("networkdomain"):
            d["networkdomain"] = p["networkdomain"]
        self.domains.append(d)
        return {"domain": self.domain_view(d)}

    def cmd_createAccount(self, cmd, p, caller):
        dom = self.ref(cmd, self.domains, p, "domainid") or self.domain_of(caller["domainid"])
        at = self.check_int(cmd, p, "accounttype")
        roleid = p.get("roleid")
        if at is None and roleid is None:
            raise invalid("Neither role ID nor account type provided")
        if roleid is not None:
            roles = {"role-admin": 1, "role-domainadmin": 2, "role-user": 0}
            if roleid not in roles:
                raise bad_value(cmd, "roleid", roleid)
            at = roles[roleid]
        if at not in (0, 1, 2, 3, 4):
            raise invalid("Invalid account type %s given; unable to create account" % at)
        name = p.get("account") or p["username"]
        for a in self.accounts:
            if a["domainid"] == dom["id"] and a["name"].lower() == name.lower():
                raise invalid("The specified account: %s already exists" % name)
        for u in self.users:
            if u["domainid"] == dom["id"] and u["username"] == p["username"]:
                raise invalid("The user %s already exists in domain %s" % (p["username"], dom["id"]))
        acct = self._new_account(name, at, dom, p["username"], p["email"], p["firstname"], p["lastname"])
        acct["user"][0]["_password"] = p["password"]
        return {"account": self.account_view(acct)}

    def cmd_createServiceOffering(self, cmd, p, caller):
        cpu = self.check_int(cmd, p, "cpunumber")
        speed = self.check_int(cmd, p, "cpuspeed")
        mem = self.check_int(cmd, p, "memory")
        given = [x is not None for x in (cpu, speed, mem)]
        if any(given) and not all(given):
            raise invalid("For creating a custom compute offering cpu, cpu speed and memory all should be null")
        for v, n in ((cpu, "cpunumber"), (speed, "cpuspeed"), (mem, "memory")):
            if v is not None and v <= 0:
                raise invalid("Failed to create service offering %s: specify %s greater than 0" % (p["name"], n))
        so = self._service_offering(p["name"], cpu, speed, mem, not all(given), p.get("displaytext") or p["name"])
        self.service_offerings.append(so)
        return {"serviceoffering": so}

    def check_url(self, url, fmt):
        u = urllib.parse.urlparse(url)
        if u.scheme not in ("http", "https"):
            raise invalid("Unsupported scheme for url: %s" % url)
        if not re.search(r"\.%s(\.(gz|bz2|zip|xz))?$" % fmt.lower(), u.path.lower()):
            raise invalid("Please specify a valid URL. URL:%s is an invalid for the format %s"
                          % (url, fmt.lower()))
        host = u.hostname or ""
        if not self.args.allow_loopback_urls and (host in ("localhost",) or host.startswith("127.")
                                                  or host.startswith("169.254.") or host == "::1"):
            raise invalid("Please specify a valid URL. URL:%s is an invalid (loopback or link-local host)" % url)

    def check_format(self, cmd, p, hypervisor=True):
        zone = self.ref(cmd, self.zones, p, "zoneid") or self.zones[0]
        self.check_zone_format(cmd, p, zone, hypervisor)

    def new_template(self, cmd, p, caller, status, state):
        owner = self.owner(cmd, p, caller)
        zone = self.ref(cmd, self.zones, p, "zoneid") or self.zones[0]
        os_ = self.ref(cmd, self.os_types, p, "ostypeid") or self.os_types[1]
        for t in self.templates:
            if t["_accountid"] == owner["id"] and t["name"] == p["name"] and t["state"] != "Inactive":
                pass  # CloudStack allows duplicate template names
        t = {"id": new_id(), "name": p["name"], "displaytext": p.get("displaytext") or p["name"],
             "format": self.disk_format(zone), "hypervisor": self.zone_hypervisor(zone), "zoneid": zone["id"],
             "zonename": zone["name"], "ostypeid": os_["id"], "ostypename": os_["description"], "isready": False, "status": status,
             "state": state, "ispublic": self.check_bool(cmd, p, "ispublic", False),
             "isfeatured": self.check_bool(cmd, p, "isfeatured", False),
             "passwordenabled": self.check_bool(cmd, p, "passwordenabled", False),
             "requireshvm": self.check_bool(cmd, p, "requireshvm", True),
             "templatetype": "USER", "created": now_str(), "checksum": p.get("checksum"),
             "_accountid": owner["id"], "_polls": 0}
        t.update(self.owner_fields(owner))
        self.check_checksum(cmd, p)
        self.templates.append(t)
        return t

    def check_checksum(self, cmd, p):
        c = p.get("checksum")
        if c is None:
            return
        m = re.fullmatch(r"(\{(MD5|SHA-1|SHA-256|SHA-384|SHA-512)\})?([0-9a-fA-F]+)", c)
        if not m:
            raise invalid("Invalid checksum format: %s" % c)

    def cmd_registerTemplate(self, cmd, p, caller):
        self.check_format(cmd, p)
        self.check_url(p["url"], p["format"])
        t = self.new_template(cmd, p, caller, "", "Active")
        t["url"] = p["url"]
        self.start_download(t, "template", p["url"])
        # registerTemplate answers a list of one template
        return {"count": 1, "template": [self.template_view(t)]}

    def upload_params(self, kind, entity):
        token = new_id()
        expires = now_str_plus(self.args.upload_timeout)
        base = self.base_url
        if self.args.upload_host:
            # the secondary storage VM has an address of its own
            u = urllib.parse.urlsplit(base)
            base = "%s://%s:%d" % (u.scheme, self.args.upload_host, u.port)
        post_url = "%s/upload/%s" % (base, token)
        metadata = base64.b64encode(json.dumps({"id": entity["id"], "kind": kind,
                                                "token": token}).encode()).decode()
        sig = base64.b64encode(hmac.new(self.upload_key, (metadata + post_url + expires).encode(),
                                        hashlib.sha1).digest()).decode()
        self.uploads[token] = {"kind": kind, "id": entity["id"], "expires": expires, "signature": sig,
                               "metadata": metadata, "used": False,
                               "host": urllib.parse.urlparse(post_url).netloc}
        return {"getuploadparams": {"id": entity["id"], "postURL": post_url, "metadata": metadata,
                                    "expires": expires, "signature": sig}}

    def cmd_getUploadParamsForTemplate(self, cmd, p, caller):
        self.check_format(cmd, p)
        self.ref(cmd, self.zones, p, "zoneid", required=True)
        t = self.new_template(cmd, p, caller, "", "NotUploaded")
        return self.upload_params("template", t)

    def new_volume(self, cmd, p, caller, state):
        owner = self.owner(cmd, p, caller)
        zone = self.ref(cmd, self.zones, p, "zoneid", required=True)
        do = self.ref(cmd, self.disk_offerings, p, "diskofferingid")
        self.check_checksum(cmd, p)
        v = {"id": new_id(), "name": p["name"], "type": "DATADISK", "zoneid": zone["id"],
             "zonename": zone["name"], "state": state, "format": self.disk_format(zone),
             "hypervisor": self.zone_hypervisor(zone),
             "created": now_str(), "size": 0, "_accountid": owner["id"], "_polls": 0,
             "checksum": p.get("checksum")}
        if do:
            v["diskofferingid"] = do["id"]
            v["diskofferingname"] = do["name"]
        v.update(self.owner_fields(owner))
        self.volumes.append(v)
        return v

    def cmd_getUploadParamsForVolume(self, cmd, p, caller):
        self.check_format(cmd, p, hypervisor=False)
        v = self.new_volume(cmd, p, caller, "NotUploaded")
        return self.upload_params("volume", v)

    def cmd_uploadVolume(self, cmd, p, caller):
        self.check_format(cmd, p, hypervisor=False)
        self.check_url(p["url"], p["format"])
        v = self.new_volume(cmd, p, caller, "UploadOp")
        v["url"] = p["url"]
        self.start_download(v, "volume", p["url"])

        def finish():
            # as the server: the job ends once the volume is registered; the
            # download goes on (UploadOp) until listVolumes shows Uploaded
            return {"volume": self.volume_view(v)}
        job = self.new_job(cmd, caller, "Volume", v["id"], finish)
        return {"jobid": job["jobid"]}

    # ---- the URL route: the "secondary storage VM" downloads the file

    def start_download(self, entity, kind, url):
        def run():
            sink = UploadSink(self.upload_path(entity["id"], self.file_suffix(entity)),
                              checksum_algo(entity.get("checksum"))[0])
            err = None
            try:
                with urllib.request.urlopen(url, timeout=30) as r:
                    total = int(r.headers.get("Content-Length") or 0)
                    while True:
                        chunk = r.read(1 << 20)
                        if not chunk:
                            break
                        sink.write(chunk)
                        if total and kind == "template":
                            with self.lock:
                                entity["status"] = "%d%% Downloaded" % (sink.size * 100 // total)
            except Exception as e:  # noqa: BLE001 - any failure becomes the status text
                err = "Failed to download %s: %s" % (url.split("?")[0], e)
            sink.close()
            with self.lock:
                if err is None:
                    facts, why = self.disk_facts(entity, sink.head, sink.tail)
                    if facts is None:
                        err = why
                    else:
                        err = checksum_problem(entity, sink)
                if err is not None:
                    if kind == "template":
                        entity["status"] = err
                        entity["state"] = "Inactive"
                    else:
                        entity["state"] = "UploadError"
                        entity["status"] = err
                    return
                self.record_upload(entity, kind, sink, facts, "url")
        entity["_downloading"] = True
        if kind == "template":
            entity["status"] = "0% Downloaded"
        threading.Thread(target=run, daemon=True).start()

    def upload_path(self, ident, suffix=".vhd"):
        if self.args.discard_uploads:
            return None
        return os.path.join(self.args.upload_dir, ident + suffix)

    def record_upload(self, entity, kind, sink, facts, route):
        entity["_upload"] = {"sha256": sink.sha.hexdigest(), "bytes": sink.size,
                             "virtualsize": facts["virtualsize"], "disktype": facts["disktype"],
                             "path": sink.path, "route": route}
        entity["_downloading"] = False
        entity["_polls"] = 0
        if kind == "template":
            entity["size"] = facts["virtualsize"]
            entity["physicalsize"] = sink.size
            entity["status"] = "Installing Template"
            entity["_installing"] = True
        else:
            entity["size"] = facts["virtualsize"]
            entity["state"] = "UploadInProgress" if route == "post" else "UploadOp"
            entity["_installing"] = True

    def advance_template(self, t):
        """A template walks 'Installing Template' -> 'Download Complete' over a few polls."""
        if t.get("_installing"):
            t["_polls"] += 1
            n = self.template_polls
            if t["_polls"] < n:
                # the secondary storage walks N% Downloaded, then installs
                t["status"] = "%d%% Downloaded" % (100 * t["_polls"] // n)
            elif t["_polls"] == n:
                t["status"] = "Installing Template"
            if t["_polls"] > n:
                t["_installing"] = False
                t["status"] = "Download Complete"
                t["isready"] = True
                t["state"] = "Active"

    def advance_volume(self, v):
        if v.get("_installing"):
            v["_polls"] += 1
            if v["_polls"] > self.template_polls:
                v["_installing"] = False
                v["state"] = "Uploaded"

    # ---- VMs

    def cmd_deployVirtualMachine(self, cmd, p, caller):
        zone = self.ref(cmd, self.zones, p, "zoneid", required=True)
        so = self.ref(cmd, self.service_offerings, p, "serviceofferingid", required=True)
        if p.get("templateid") is None:
            raise missing(cmd, "templateid")
        t = self.ref(cmd, self.templates, p, "templateid")
        if t["hypervisor"] != self.zone_hypervisor(zone):
            raise invalid("The template's hypervisor %s is not the hypervisor %s of zone %s"
                          % (t["hypervisor"], self.zone_hypervisor(zone), zone["name"]))
        owner = self.owner(cmd, p, caller)
        if not t.get("ispublic") and t["_accountid"] != owner["id"] and owner["accounttype"] != 1:
            raise ApiError(531, "Acct[%s-%s] does not have permission to operate with resource Acct[%s-%s]"
                           % (owner["id"], owner["name"], t["_accountid"], t["account"]), 4365)
        details = parse_map(cmd, p, "details")
        cpu, speed, mem = so.get("cpunumber"), so.get("cpuspeed"), so.get("memory")
        if so["iscustomized"]:
            d = details[0] if details else {}
            try:
                cpu, speed, mem = int(d["cpuNumber"]), int(d.get("cpuSpeed", 0)), int(d["memory"])
            except (KeyError, ValueError):
                raise invalid("Need to specify custom parameter values cpu, cpu speed and memory when using "
                              "custom offering")
        name = p.get("name")
        if name is not None:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,62}", name) or name.endswith("-"):
                raise invalid("Invalid name. Vm name can contain ASCII letters 'a' through 'z', the digits "
                              "'0' through '9', and the hyphen ('-'), must be between 1 and 63 characters "
                              "long, and can't start or end with \"-\" and can't start with digit")
            for vm in self.vms:
                if vm["name"].lower() == name.lower() and vm["state"] not in ("Expunging", "Destroyed"):
                    raise invalid("The vm with hostName %s already exists in the network domain: cs1cloud.internal; "
                                  "network=defaultGuestNetwork" % name)
        nets = []
        if p.get("networkids"):
            for nid in p["networkids"].split(","):
                n = self.find(self.networks, nid)
                if n is None:
                    raise bad_value(cmd, "networkids", nid)
                nets.append(n)
        else:
            nets = [n for n in self.networks if n["zoneid"] == zone["id"]][:1]
        mac = self.check_mac(p["macaddress"]) if p.get("macaddress") else None
        startvm = self.check_bool(cmd, p, "startvm", True)
        vmid = new_id()
        name = name or ("VM-" + vmid)
        net = nets[0]
        nic = self.new_nic(net, p.get("ipaddress"), mac)
        vm = {"id": vmid, "name": name, "displayname": p.get("displayname") or name, "state": "Starting",
              "zoneid": zone["id"], "zonename": zone["name"], "serviceofferingid": so["id"],
              "serviceofferingname": so["name"], "templateid": t["id"], "templatename": t["name"],
              "guestosid": t["ostypeid"], "cpunumber": cpu, "cpuspeed": speed, "memory": mem,
              "hypervisor": self.zone_hypervisor(zone), "created": now_str(), "_accountid": owner["id"],
              "nic": [nic]}
        if details:
            vm["details"] = details[0]
        vm.update(self.owner_fields(owner))
        self.vms.append(vm)

        def finish():
            if not t["isready"]:
                vm["state"] = "Error"
                raise ApiError(530, "Template %s has not been completely downloaded to zone %s"
                               % (t["id"], zone["id"]), 4250)
            if (t.get("_upload") or {}).get("disktype") == "differencing":
                vm["state"] = "Error"
                raise ApiError(530, "Unable to create a deployment for VM[User|%s]: the template's VHD is a "
                               "differencing disk whose parent is missing" % name, 4250)
            root = {"id": new_id(), "name": "ROOT-" + vmid[:8], "type": "ROOT", "state": "Ready",
                    "virtualmachineid": vmid, "vmname": name, "deviceid": 0, "zoneid": zone["id"],
                    "size": t.get("size", 0), "templateid": t["id"], "created": now_str(),
                    "_accountid": owner["id"]}
            root.update(self.owner_fields(owner))
            self.volumes.append(root)
            vm["state"] = "Running" if startvm else "Stopped"
            return {"virtualmachine": self.vm_view(vm)}
        job = self.new_job(cmd, caller, "VirtualMachine", vmid, finish)

        def failed():
            # as the server: a deployment that fails leaves the VM in Error
            vm["state"] = "Error"
        job["on_fail"] = failed
        return {"id": vmid, "jobid": job["jobid"]}

    def cmd_startVirtualMachine(self, cmd, p, caller):
        vm = self.ref(cmd, self.vms, p, "id", required=True)
        if vm["state"] not in ("Stopped", "Running"):
            raise invalid("VM %s is in state %s, cannot start" % (vm["id"], vm["state"]))

        def finish():
            vm["state"] = "Running"
            return {"virtualmachine": self.vm_view(vm)}
        return {"jobid": self.new_job(cmd, caller, "VirtualMachine", vm["id"], finish)["jobid"]}

    def cmd_stopVirtualMachine(self, cmd, p, caller):
        vm = self.ref(cmd, self.vms, p, "id", required=True)

        def finish():
            vm["state"] = "Stopped"
            return {"virtualmachine": self.vm_view(vm)}
        return {"jobid": self.new_job(cmd, caller, "VirtualMachine", vm["id"], finish)["jobid"]}

    def cmd_attachVolume(self, cmd, p, caller):
        v = self.ref(cmd, self.volumes, p, "id", required=True)
        vm = self.ref(cmd, self.vms, p, "virtualmachineid", required=True)
        dev = self.check_int(cmd, p, "deviceid")
        if v["type"] != "DATADISK":
            raise invalid("Please specify a volume with the valid type: DATADISK")
        if v.get("virtualmachineid"):
            raise invalid("Please specify a volume that is not attached to any VM.")
        if v["state"] not in ("Uploaded", "Ready", "Allocated"):
            raise invalid("Volume: %s is in state %s, it should be in Allocated, Ready or Uploaded state"
                          % (v["name"], v["state"]))
        if v["_accountid"] != vm["_accountid"]:
            raise ApiError(531, "Volume and VM belong to different accounts", 4365)
        if v.get("hypervisor") and v["hypervisor"] != vm["hypervisor"]:
            raise invalid("Volume %s (%s, %s) cannot be attached to a %s VM"
                          % (v["name"], v.get("format"), v["hypervisor"], vm["hypervisor"]))
        used = {x.get("deviceid") for x in self.volumes if x.get("virtualmachineid") == vm["id"]}
        if dev is not None:
            if dev == 0:
                raise invalid("deviceId can't be 0, which is used by Root device")
            if dev == 3 and vm["hypervisor"] == "XenServer":
                raise invalid("deviceId 3 is reserved for the CD-ROM on XenServer")
            if dev > 15 or dev < 0:
                raise invalid("deviceId should be in the range 1-15")
            if dev in used:
                raise invalid("deviceId %d is used by VM %s" % (dev, vm["name"]))
        else:
            dev = next(d for d in (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15) if d not in used)
        v["_pending_attach"] = True

        def finish():
            v.pop("_pending_attach", None)
            v["virtualmachineid"] = vm["id"]
            v["vmname"] = vm["name"]
            v["deviceid"] = dev
            v["state"] = "Ready"
            v["attached"] = now_str()
            return {"volume": self.volume_view(v)}
        return {"jobid": self.new_job(cmd, caller, "Volume", v["id"], finish)["jobid"]}

    # ---- deletions

    def cmd_deleteTemplate(self, cmd, p, caller):
        t = self.ref(cmd, self.templates, p, "id", required=True)
        if p.get("zoneid") is not None:
            self.ref(cmd, self.zones, p, "zoneid")
        if t["_accountid"] != caller["id"] and caller["accounttype"] != 1:
            raise ApiError(531, "Account %s does not have permission to delete template %s"
                           % (caller["name"], t["id"]), 4365)
        users = [vm["name"] for vm in self.vms if vm["templateid"] == t["id"] and vm["state"] != "Expunging"]
        if users and not self.check_bool(cmd, p, "forced", False):
            raise invalid("Unable to delete template %s because it is used by VMs: %s; use forced=true"
                          % (t["id"], ", ".join(users)))
        # gone from every list at once; the job reports the outcome
        self.templates.remove(t)
        t["removed"] = now_str()
        self.removed_templates.append(t)
        job = self.new_job(cmd, caller, "Template", t["id"], lambda: {"success": True})
        return {"jobid": job["jobid"]}

    def cmd_deleteVolume(self, cmd, p, caller):
        v = self.ref(cmd, self.volumes, p, "id", required=True)
        if v.get("virtualmachineid"):
            raise invalid("Please specify a volume that is not attached to any VM.")
        if v["_accountid"] != caller["id"] and caller["accounttype"] != 1:
            raise ApiError(531, "Account %s does not have permission to delete volume %s"
                           % (caller["name"], v["id"]), 4365)
        self.volumes.remove(v)
        v["removed"] = now_str()
        self.removed_volumes.append(v)
        return {"success": "true"}

    # ---- resource tags: createTags, deleteTags, listTags, the tags filter
    # (TaggedResourceManagerImpl: resourcetype by name, case-insensitive; a key
    # once per resource; tags[0].key/value on list calls select resources that
    # carry every tag given)

    TAGGABLE = {"uservm": ("UserVm", "vms"), "template": ("Template", "templates"), "volume": ("Volume", "volumes")}

    def taggable(self, cmd, p):
        rt = self.TAGGABLE.get(p["resourcetype"].lower())
        if rt is None:
            raise invalid("Invalid resource type %s" % p["resourcetype"])
        return rt

    def tag_targets(self, cmd, p, caller):
        kind, coll = self.taggable(cmd, p)
        out = []
        for rid in p["resourceids"].split(","):
            r = self.find(getattr(self, coll), rid.strip())
            if r is None:
                raise invalid("Unable to find resource by id %s and type %s" % (rid, kind))
            if r["_accountid"] != caller["id"] and caller["accounttype"] != 1:
                raise ApiError(531, "Account %s does not have permission to tag %s %s"
                               % (caller["name"], kind, rid), 4365)
            out.append(r)
        return kind, out

    def cmd_createTags(self, cmd, p, caller):
        tags = parse_map(cmd, p, "tags")
        if not tags:
            raise missing(cmd, "tags")
        for t in tags:
            if not t.get("key") or "value" not in t:
                raise invalid("Unable to execute API command createtags: tags need a key and a value")
        kind, targets = self.tag_targets(cmd, p, caller)
        for r in targets:
            for t in tags:
                if any(x["key"] == t["key"] for x in r.get("_tags", [])):
                    raise invalid("tag %s already on %s with id %s" % (t["key"], kind, r["id"]))

        def finish():
            for r in targets:
                owner = self.find(self.accounts, r["_accountid"])
                for t in tags:
                    r.setdefault("_tags", []).append({
                        "key": t["key"], "value": t["value"], "resourcetype": kind, "resourceid": r["id"],
                        "account": owner["name"], "domainid": owner["domainid"], "domain": owner["domain"]})
            return {"success": True}
        return {"jobid": self.new_job(cmd, caller, "None", None, finish)["jobid"]}

    def cmd_deleteTags(self, cmd, p, caller):
        tags = parse_map(cmd, p, "tags")
        _kind, targets = self.tag_targets(cmd, p, caller)

        def finish():
            for r in targets:
                r["_tags"] = [x for x in r.get("_tags", [])
                              if tags and not any(x["key"] == t.get("key") and t.get("value", x["value"])
                                                  == x["value"] for t in tags)]
            return {"success": True}
        return {"jobid": self.new_job(cmd, caller, "None", None, finish)["jobid"]}

    def cmd_listTags(self, cmd, p, caller):
        rows = []
        for kind, coll in self.TAGGABLE.values():
            for r in self.visible(cmd, p, caller, list(getattr(self, coll))):
                rows += [dict(t) for t in r.get("_tags", [])]
        for k in ("resourcetype", "resourceid", "key", "value"):
            if p.get(k) is not None:
                rows = [t for t in rows if str(t[k]).lower() == p[k].lower()] if k == "resourcetype" \
                    else [t for t in rows if t[k] == p[k]]
        return self.page(cmd, p, rows, "tag")

    def tagged(self, cmd, p, items):
        want = parse_map(cmd, p, "tags")
        for t in want:
            items = [x for x in items if any(y["key"] == t.get("key") and ("value" not in t or y["value"] == t["value"])
                                             for y in x.get("_tags", []))]
        return items

    # ---- VM removal: destroyVirtualMachine (expunge=true removes it at once,
    # as an admin may), expungeVirtualMachine; data disks are detached first

    def remove_vm(self, vm, expunge):
        for v in list(self.volumes):
            if v.get("virtualmachineid") == vm["id"]:
                if v["type"] == "ROOT":
                    self.volumes.remove(v)
                    v["removed"] = now_str()
                    self.removed_volumes.append(v)
                else:
                    for k in ("virtualmachineid", "vmname", "deviceid", "attached"):
                        v.pop(k, None)
        vm["state"] = "Expunging" if expunge else "Destroyed"
        if expunge:
            self.vms.remove(vm)
            vm["removed"] = now_str()
            self.removed_vms.append(vm)

    def cmd_destroyVirtualMachine(self, cmd, p, caller):
        vm = self.ref(cmd, self.vms, p, "id", required=True)
        expunge = self.check_bool(cmd, p, "expunge", False)
        if expunge and caller["accounttype"] != 1:
            raise ApiError(531, "Parameter expunge can be passed by Admin only. Or when the allow.user.expunge."
                           "recovery.vm config is set to true", 4365)
        if vm["state"] in ("Destroyed", "Expunging") and not expunge:
            raise invalid("Unable to find VM by id=%s or the VM is already destroyed" % vm["id"])

        def finish():
            self.remove_vm(vm, expunge)
            return {"virtualmachine": self.vm_view(vm)}
        return {"jobid": self.new_job(cmd, caller, "VirtualMachine", vm["id"], finish)["jobid"]}

    def cmd_expungeVirtualMachine(self, cmd, p, caller):
        vm = self.ref(cmd, self.vms, p, "id", required=True)
        if vm["state"] != "Destroyed":
            raise invalid("Please specify a VM that is in Destroyed state: VM %s is %s" % (vm["id"], vm["state"]))

        def finish():
            self.remove_vm(vm, True)
            return {"success": True}
        return {"jobid": self.new_job(cmd, caller, "VirtualMachine", vm["id"], finish)["jobid"]}

    # ---- state dump

    def dump(self):
        def strip(x):
            return {k: v for k, v in x.items() if not k.startswith("_") and k != "next_ip"}

        def with_owner(x):
            d = strip(x)
            d["accountid"] = x.get("_accountid")
            up = x.get("_upload")
            if up:
                d["upload"] = dict(up)
            d["tags"] = [dict(t) for t in x.get("_tags", [])]
            return d
        return {
            "zones": [strip(z) for z in self.zones],
            "domains": [self.domain_view(d) for d in self.domains],
            "accounts": [dict(self.account_view(a), has_password=any("_password" in u for u in a["user"]))
                         for a in self.accounts],
            "service_offerings": [strip(s) for s in self.service_offerings],
            "disk_offerings": [strip(s) for s in self.disk_offerings],
            "os_types": [strip(s) for s in self.os_types],
            "networks": [strip(n) for n in self.networks],
            "templates": [with_owner(t) for t in self.templates],
            "volumes": [with_owner(v) for v in self.volumes],
            "vms": [with_owner(v) for v in self.vms],
            "removed_templates": [with_owner(t) for t in self.removed_templates],
            "removed_volumes": [with_owner(v) for v in self.removed_volumes],
            "removed_vms": [with_owner(v) for v in self.removed_vms],
            "jobs": [self.job_view(j) for j in self.jobs],
            "calls": dict(self.calls),
            "faults": self.faults,
            "kvm": self.kvm_dump(),
        }


class RetryLater(Exception):
    """A job's finish() that is not ready yet: stay pending."""


def now_str_plus(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S+0000")


def parse_map(cmd, p, name):
    """details[0].cpuNumber=2 -> [{"cpuNumber": "2"}]; malformed -> 430."""
    out = {}
    for k, v in p.items():
        if k == name:
            raise ApiError(430, "Unable to execute API command %s due to malformed map parameter %s"
                           % (cmd.lower(), name), 9999)
        if k.startswith(name + "["):
            m = re.fullmatch(re.escape(name) + r"\[(\d+)\]\.(\w+)", p.orig_names.get(k, k))
            if not m:
                raise ApiError(430, "Unable to execute API command %s due to malformed map parameter %s"
                               % (cmd.lower(), k), 9999)
            out.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return [out[i] for i in sorted(out)]


class Params(dict):
    """Parameters with lower-cased names (the server matches them
    case-insensitively), keeping the original spelling for maps."""

    def __init__(self):
        super().__init__()
        self.orig_names = {}


# --------------------------------------------------------------------------
# listApis: the commands this server knows, as the real server lists the ones
# the caller may use (name, isasync, params); `salvage api` names an unknown
# command from it. Kept in its own section (several helpers extend COMMANDS).

COMMANDS["listApis"] = ([], False, False)


def _api_entry(cloud, name):
    required, _changing, is_async = COMMANDS[name]
    optional = set(API_PARAMS.get(name, [])) - set(required)
    if name == "importVm" and cloud.args.importvm_mac:
        optional.add("nicmacaddresslist")
    return {"name": name, "isasync": is_async, "description": "",
            "params": [{"name": r, "required": True, "type": "string"} for r in required]
            + [{"name": o, "required": False, "type": "string"} for o in sorted(optional)]}


def _cmd_listApis(self, cmd, p, caller):
    name = p.get("name")
    if name is not None:
        if name not in COMMANDS:
            raise ApiError(431, "Unable to find API: %s" % name)
        names = [name]
    else:
        names = sorted(COMMANDS)
    return {"count": len(names), "api": [_api_entry(self, n) for n in names]}


Cloud.cmd_listApis = _cmd_listApis


# --------------------------------------------------------------------------
# HTTP


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CloudStackSimulator/1"
    # TCP_NODELAY, as Jetty sets it: with Nagle on, an answer written as headers then body
    # waits for the client's delayed ACK, 40 ms on every call of a kept-alive connection.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if self.server.cloud.args.verbose:
            # never log query strings: they carry apikey and signature
            sys.stderr.write("sim: %s %s\n" % (self.command, self.path.split("?")[0]))

    # ---- plumbing

    def send(self, status, body, ctype="application/json; charset=UTF-8", extra=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj, sort_keys=True))

    def read_body(self, limit=16 << 20):
        n = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(400, "chunked request bodies are not accepted")
        if n is None:
            return b""
        n = int(n)
        if n > limit:
            self.close_connection = True
            raise ApiError(413, "request body too large")
        return self.rfile.read(n)

    def drain(self):
        n = int(self.headers.get("Content-Length") or 0)
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.drain()
        self.send(405, "method not allowed\n", "text/plain")

    def route(self, method):
        path = urllib.parse.urlsplit(self.path).path
        cloud = self.server.cloud
        try:
            if path == "/client/api":
                self.api(method)
            elif path.startswith("/upload/"):
                self.upload(method, path[len("/upload/"):])
            elif path == "/_sim/state" and method == "GET":
                with cloud.lock:
                    self.send_json(200, cloud.dump())
            elif path == "/_sim/faults" and method == "POST":
                self.set_faults(json.loads(self.read_body() or b"{}"))
            elif path == "/_sim/populate" and method == "POST":
                self.populate(json.loads(self.read_body() or b"{}"))
            elif path == "/_sim/shutdown" and method == "POST":
                self.drain()
                self.send_json(200, {"stopping": True})
                threading.Thread(target=self.server.stop, daemon=True).start()
            else:
                self.drain()
                self.send(404, "not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except ValueError as e:
            self.send_json(400, {"error": str(e)})

    def set_faults(self, spec):
        cloud = self.server.cloud
        with cloud.lock:
            if spec.get("reset"):
                cloud.faults = {}
                cloud.job_polls = cloud.args.job_polls
                cloud.template_polls = cloud.args.template_polls
            for k, v in spec.items():
                if k == "reset":
                    continue
                if k == "job_polls":
                    cloud.job_polls = int(v)
                elif k == "template_polls":
                    cloud.template_polls = int(v)
                elif k in ("fail_commands", "http_5xx", "slow", "job_fail", "drop", "job_pending", "upload",
                           "lose", "truncate"):
                    cloud.faults.setdefault(k, {}).update(v)
                else:
                    raise ValueError("unknown fault kind %r" % k)
            self.send_json(200, {"faults": cloud.faults, "job_polls": cloud.job_polls,
                                 "template_polls": cloud.template_polls})

    def populate(self, spec):
        """Bulk fixtures for tests (paging over thousands of rows)."""
        cloud = self.server.cloud
        with cloud.lock:
            root = cloud.domains[0]
            made = {"accounts": 0, "domains": 0}
            for i in range(int(spec.get("accounts", 0))):
                name = "%s%04d" % (spec.get("prefix", "user"), i)
                cloud._new_account(name, 0, root, name, name + "@example.com", "F", "L")
                made["accounts"] += 1
            for i in range(int(spec.get("domains", 0))):
                name = "%s%04d" % (spec.get("prefix", "dom"), i)
                cloud.domains.append({"id": new_id(), "name": name, "path": "ROOT/" + name, "level": 1,
                                      "parentdomainid": root["id"], "parentdomainname": "ROOT",
                                      "created": now_str()})
                made["domains"] += 1
            self.send_json(200, made)

    # ---- the API

    def api_error(self, key, e):
        body = {"uuidList": [], "errorcode": e.errorcode, "errortext": e.errortext}
        if e.cserrorcode is not None:
            body["cserrorcode"] = e.cserrorcode
        self.send_json(e.errorcode, {key: body})

    def api(self, method):
        cloud = self.server.cloud
        query = urllib.parse.urlsplit(self.path).query
        raw = urllib.parse.parse_qsl(query, keep_blank_values=True)
        try:
            body = self.read_body()
        except ApiError as e:
            self.api_error("errorresponse", e)
            return
        if method == "POST":
            ctype = self.headers.get("Content-Type", "")
            if body and not ctype.startswith("application/x-www-form-urlencoded"):
                self.api_error("errorresponse", ApiError(400, "POST body must be application/x-www-form-urlencoded"))
                return
            raw += urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        # the servlet keeps the first value of a repeated parameter
        params = Params()
        order = []
        for k, v in raw:
            lk = k.lower()
            if lk not in params:
                params[lk] = v
                params.orig_names[lk] = k
                order.append((k, v))
        cmd = params.get("command")
        if params.get("response") != "json":
            # the real server answers XML by default
            self.send(200, "<?xml version=\"1.0\" encoding=\"UTF-8\"?><error>response=json expected</error>",
                      "text/xml; charset=UTF-8")
            return
        if cmd is None or cmd not in COMMANDS:
            # unknown (or mis-cased) command names: 401 errorresponse, before any signature check
            self.api_error("errorresponse", ApiError(401, UNAUTH_TEXT))
            return
        key = RESPONSE_KEY.get(cmd, cmd.lower() + "response")
        required, changing, _async = COMMANDS[cmd]
        with cloud.lock:
            cloud.calls[cmd] = cloud.calls.get(cmd, 0) + 1
            drop = cloud.take_fault("drop", cmd)
            fivexx = cloud.take_fault("http_5xx", cmd)
            slow = cloud.take_fault("slow", cmd)
            lose = cloud.take_fault("lose", cmd)
            truncate = cloud.take_fault("truncate", cmd)
        if drop is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if slow is not None:
            time.sleep(float(slow.get("seconds", 2)))
        if fivexx is not None:
            # what a proxy in front of a restarting management server answers
            self.send(int(fivexx.get("status", 503)), "<html><body>503 Service Unavailable</body></html>",
                      "text/html")
            return
        if changing and method != "POST" and cloud.args.enforce_post:
            self.api_error(key, ApiError(400, "State changing command %s needs to be sent using POST request"
                                         % cmd))
            return
        caller = self.authenticate(cmd, params, order, changing)
        if caller is None:
            self.api_error(key, ApiError(401, UNAUTH_TEXT))
            return
        with cloud.lock:
            try:
                fault = cloud.take_fault("fail_commands", cmd)
                if fault is not None:
                    raise ApiError(int(fault.get("errorcode", 530)), fault.get("errortext", "Injected failure"),
                                   fault.get("cserrorcode", 4250))
                for r in required:
                    if params.get(r) in (None, ""):
                        raise missing(cmd, r)
                result = cloud.execute(cmd, params, caller)
            except ApiError as e:
                self.api_error(key, e)
                return
            except RetryLater:
                result = {}
        if lose is not None:
            self.lose_reply()
            return
        if truncate is not None:
            self.truncated_reply({key: result})
            return
        self.send_json(200, {key: result})

    # ---- faults after the command ran: the reply lost (connection closed with
    # no answer) or truncated (a complete HTTP answer whose JSON body stops
    # half-way, as a proxy that cut it sends)

    def lose_reply(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def truncated_reply(self, obj):
        body = json.dumps(obj).encode()
        body = body[: len(body) // 2]
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def authenticate(self, cmd, params, order, changing):
        """ApiServer.verifyRequest: the signature over the sorted, Java-encoded,
        lower-cased parameters; version 3 requires a valid future `expires`."""
        cloud = self.server.cloud
        apikey = params.get("apikey")
        signature = params.get("signature")
        if not apikey or not signature:
            return None
        user = None
        for u in cloud.users:
            if u["apikey"] is not None and u["apikey"] == apikey:
                user = u
        if user is None:
            return None
        version = params.get("signatureversion")
        expires = params.get("expires")
        if cloud.args.enforce_post and (version != "3" or not expires):
            return None
        if version == "3":
            if not expires:
                return None
            t = parse_expires(expires)
            if t is None or t < time.time():
                return None
            if cloud.args.enforce_post and t > time.time() + 15 * 60:
                return None
        pairs = sorted((k, v) for k, v in order if k.lower() != "signature")
        unsigned = "&".join("%s=%s" % (k, java_urlencode(v)) for k, v in pairs).lower()
        want = base64.b64encode(hmac.new(user["secretkey"].encode(), unsigned.encode(), hashlib.sha1).digest())
        if not hmac.compare_digest(want, signature.encode()):
            return None
        return cloud.find(cloud.accounts, user["accountid"])

    # ---- POST upload (the secondary storage VM's endpoint)

    def upload(self, method, token):
        cloud = self.server.cloud
        with cloud.lock:
            up = cloud.uploads.get(token)
            fivexx = cloud.take_fault("upload", "http_5xx")
        if fivexx is not None:
            self.drain()
            self.send(503, "service unavailable\n", "text/plain")
            return
        if up is None:
            self.drain()
            self.send(404, "unknown upload URL\n", "text/plain")
            return
        coll = cloud.templates if up["kind"] == "template" else cloud.volumes

        def refuse(status, why):
            with cloud.lock:
                ent = cloud.find(coll, up["id"])
                up["used"] = True
                if ent is not None and ent["state"] not in ("Active", "Uploaded", "Ready") and not ent.get("isready"):
                    # one refused POST moves the entity to UploadError: the URL is spent
                    ent["state"] = "UploadError"
                    ent["status"] = why
            self.drain()
            self.close_connection = True
            self.send(status, why + "\n", "text/plain")

        if method != "POST":
            refuse(400, "only POST is supported")
            return
        if up["used"]:
            self.drain()
            self.close_connection = True
            self.send(400, "upload URL already used\n", "text/plain")
            return
        h = self.headers
        if h.get("X-signature") != up["signature"] or h.get("X-metadata") != up["metadata"] \
                or h.get("X-expires") != up["expires"]:
            refuse(400, "signature validation failed")
            return
        if (parse_expires(up["expires"]) or 0) < time.time():
            refuse(400, "upload URL expired")
            return
        if h.get("Host") != up["host"]:
            refuse(400, "signature validation failed (Host %s)" % h.get("Host"))
            return
        if h.get("Transfer-Encoding", "").lower() == "chunked" or h.get("Content-Length") is None:
            refuse(400, "Content-Length is required (no chunked upload)")
            return
        m = re.match(r"multipart/form-data;.*boundary=\"?([^\";]+)\"?", h.get("Content-Type", ""))
        if not m:
            refuse(400, "multipart/form-data expected")
            return
        with cloud.lock:
            ent = cloud.find(coll, up["id"])
        if ent is None:
            refuse(400, "the %s of this upload URL was deleted" % up["kind"])
            return
        with cloud.lock:
            up["used"] = True
            ent["state"] = "UploadInProgress"
            cut = cloud.take_fault("upload", "cut")
        if cut is not None:
            with cloud.lock:
                ent["state"] = "UploadError"
                ent["status"] = "connection lost during the upload"
            cut_upload(self, cut)
            return
        length = int(h["Content-Length"])
        sinks = []

        def new_sink():
            s = UploadSink(cloud.upload_path(up["id"], cloud.file_suffix(ent)) if not sinks else None,
                           checksum_algo(ent.get("checksum"))[0])
            sinks.append(s)
            return s
        try:
            _fields, files = stream_multipart(self.rfile, length, m.group(1).encode(), new_sink)
        except MultipartError as e:
            for s in sinks:
                s.close()
            self.close_connection = True
            with cloud.lock:
                ent["state"] = "UploadError"
                ent["status"] = str(e)
            self.send(400, str(e) + "\n", "text/plain")
            return
        if not files:
            with cloud.lock:
                ent["state"] = "UploadError"
                ent["status"] = "no file in the request"
            self.send(422, "no file in the request\n", "text/plain")
            return
        _name, filename, sink = files[0]
        why = None
        suffix = cloud.file_suffix(ent)
        if not filename.lower().endswith(suffix):
            why = "File type is not supported: the file name %s must end in %s" % (filename, suffix)
        else:
            facts, why = cloud.disk_facts(ent, sink.head, sink.tail)
            if not why and sink.path and ent.get("format") != "QCOW2":
                why = vhd_structure_problem(sink.path, sink.size)
            if not why:
                why = checksum_problem(ent, sink)
        if why:
            with cloud.lock:
                ent["state"] = "UploadError"
                ent["status"] = why
            if sink.path:
                try:
                    os.unlink(sink.path)
                except OSError:
                    pass
            self.send(400, why + "\n", "text/plain")
            return
        with cloud.lock:
            cloud.record_upload(ent, up["kind"], sink, facts, "post")
        self.send(200, "upload successful.\n", "text/plain")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def stop(self):
        with self.cloud.lock:
            if getattr(self, "_stopping", False):
                return
            self._stopping = True
        self.shutdown()


def main(argv=None):
    ap = argparse.ArgumentParser(description="strict CloudStack API simulator (tests and demo)")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--ready-file", help="write the base URL here once listening")
    ap.add_argument("--apikey", required=True)
    ap.add_argument("--secretkey", required=True)
    ap.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    ap.add_argument("--enforce-post", action="store_true",
                    help="enforce.post.requests.and.timestamps: POST + signature v3 for state-changing commands")
    ap.add_argument("--state-file", help="write the JSON state dump here when exiting")
    ap.add_argument("--job-polls", type=int, default=2, help="queryAsyncJobResult answers pending this many times")
    ap.add_argument("--template-polls", type=int, default=2,
                    help="list calls a template/volume stays installing after its upload")
    ap.add_argument("--upload-timeout", type=int, default=3600, help="seconds an upload URL stays valid")
    ap.add_argument("--upload-dir", help="keep uploaded files here (default: a private temp dir)")
    ap.add_argument("--upload-host", help="host name in postURLs (default: the API's address)")
    ap.add_argument("--discard-uploads", action="store_true", help="hash uploads without storing them")
    ap.add_argument("--allow-loopback-urls", action="store_true",
                    help="let registerTemplate/uploadVolume fetch from loopback (tests only)")
    ap.add_argument("--tls-cert", help="serve HTTPS with this PEM certificate")
    ap.add_argument("--tls-key", help="private key of --tls-cert")
    ap.add_argument("--kvm-pool", help="add a KVM zone whose NFS primary pool root is this directory")
    ap.add_argument("--importvm-no-mac", dest="importvm_mac", action="store_false",
                    help="importVm without nicmacaddresslist (servers before it was added)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    own_dir = None
    if not args.upload_dir and not args.discard_uploads:
        own_dir = args.upload_dir = tempfile.mkdtemp(prefix="cloudstack-sim-")
    cloud = Cloud(args)
    srv = Server((args.host, args.port), Handler)
    srv.cloud = cloud
    scheme = "http"
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        scheme = "https"
    host, port = srv.server_address[:2]
    cloud.base_url = "%s://%s:%d" % (scheme, host, port)
    # SIGTERM (a test or the demo stopping it) exits cleanly, writing --state-file
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.stop, daemon=True).start())
    timer = threading.Timer(args.lifetime, srv.stop)
    timer.daemon = True
    timer.start()
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(cloud.base_url + "\n")
        os.rename(tmp, args.ready_file)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        timer.cancel()
        srv.server_close()
        if args.state_file:
            with cloud.lock:
                data = json.dumps(cloud.dump(), sort_keys=True, indent=1)
            tmp = args.state_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(data)
            os.rename(tmp, args.state_file)
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
