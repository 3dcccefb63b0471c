#!/usr/bin/env python3
"""Independent XVA reader for fbxen's tests (not fbxen's writer): Python's tarfile, xmlrpc.client and
hashlib. Follows xapi's import rules (xapi.md section 6): ova.xml first, chunks in increasing order,
each followed by its checksum, gaps zero-filled using the first chunk's length, stop at virtual_size.
Usage: xva_check.py XVA RAW  -> prints one JSON summary; exit 1 with a message on any violation."""
import hashlib, json, sys, tarfile, xmlrpc.client

def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)

def main(xva, raw):
    tf = tarfile.open(xva, "r:")
    members = tf.getmembers()
    if not members or members[0].name != "ova.xml":
        fail("first member is not ova.xml")
    ova = tf.extractfile(members[0]).read().decode("utf-8")
    body = ova.split("?>", 1)[1] if ova.startswith("<?xml") else ova
    p, u = xmlrpc.client.getparser()
    p.feed("<methodResponse><params><param>" + body + "</param></params></methodResponse>")
    p.close()
    doc = u.close()[0]
    version = doc["version"]
    for k in ("hostname", "date", "product_version", "product_brand", "build_number", "xapi_major", "xapi_minor", "export_vsn"):
        if k not in version:
            fail("version lacks " + k)
    if int(version["export_vsn"]) < 2:
        fail("export_vsn < 2")
    objs = {o["id"]: o for o in doc["objects"]}
    by_class = {}
    for o in doc["objects"]:
        by_class.setdefault(o["class"], []).append(o)
    vms = by_class.get("VM", [])
    if len(vms) != 1:
        fail("expected one VM")
    vm = vms[0]["snapshot"]
    if vm["domain_type"] != "hvm" or vm["HVM_boot_policy"] != "BIOS order":
        fail("VM is not HVM")
    for ref in vm["VBDs"] + vm["VIFs"]:
        if ref not in objs:
            fail("dangling " + ref)
    vbds = [objs[r]["snapshot"] for r in vm["VBDs"]]
    cds = [v for v in vbds if v["type"] == "CD"]
    disks = [v for v in vbds if v["type"] == "Disk"]
    if len(cds) != 1 or cds[0]["userdevice"] != "3" or not cds[0]["empty"] or cds[0]["VDI"] != "OpaqueRef:NULL":
        fail("no empty CD at userdevice 3")
    if len(disks) != 1 or disks[0]["userdevice"] != "0" or not disks[0]["bootable"]:
        fail("no bootable disk at userdevice 0")
    vdi_id = disks[0]["VDI"]
    vdi = objs[vdi_id]["snapshot"]
    vsize = int(vdi["virtual_size"])
    vif = objs[vm["VIFs"][0]]["snapshot"]
    if vif["network"] not in objs:
        fail("VIF network not in file")
    # Disk chunks
    rest = members[1:]
    out = bytearray()
    first_len = -1
    last = -1
    i = 0
    chunks = 0
    while len(out) < vsize:
        if i >= len(rest):
            fail("chunks end at %d before virtual_size %d" % (len(out), vsize))
        m = rest[i]
        prefix, _, suffix = m.name.partition("/")
        if prefix != vdi_id or len(suffix) != 8 or not suffix.isdigit():
            fail("unexpected member " + m.name)
        n = int(suffix)
        if n <= last:
            fail("chunk numbers do not increase at " + m.name)
        data = tf.extractfile(m).read()
        if first_len < 0:
            first_len = len(data)
        out += b"\0" * (first_len * (n - last - 1))
        out += data
        last = n
        c = rest[i + 1]
        if c.name != m.name + ".checksum":
            fail("no checksum after " + m.name)
        want = tf.extractfile(c).read().decode("ascii")
        if want != hashlib.sha1(data).hexdigest():
            fail("checksum mismatch for " + m.name)
        i += 2
        chunks += 1
    if len(out) != vsize:
        fail("chunks cover %d bytes, virtual_size is %d" % (len(out), vsize))
    if i != len(rest):
        fail("members after the disk: " + ", ".join(x.name for x in rest[i:]))
    with open(raw, "rb") as f:
        if f.read() != bytes(out):
            fail("disk content differs from the raw image")
    print(json.dumps({"ok": True, "virtual_size": vsize, "chunks": chunks, "vm": vm["name_label"],
                      "vcpus": vm["VCPUs_max"], "memory": vm["memory_static_max"], "objects": sorted(o["class"] for o in doc["objects"])}))

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
