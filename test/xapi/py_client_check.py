#!/usr/bin/env python3
"""Drives fbxen's XAPI simulator with CPython's xmlrpc.client (an independent XML-RPC implementation)
and prints what it got as JSON. Usage: py_client_check.py URL USER PASSWORD"""
import json, sys, xmlrpc.client

url, user, pw = sys.argv[1:4]
p = xmlrpc.client.ServerProxy(url)
out = {}
login = getattr(p.session, "login_with_password")(user, pw, "1.1", "py")
out["login"] = login["Status"]
s = login["Value"]
out["bad_login"] = getattr(p.session, "login_with_password")(user, "wrong", "1.1", "py")
pools = p.pool.get_all(s)["Value"]
out["default_sr_name"] = p.SR.get_name_label(s, p.pool.get_default_SR(s, pools[0])["Value"])["Value"]
srs = p.SR.get_all_records(s)["Value"]
out["sr_shared"] = sorted([r["name_label"], r["shared"]] for r in srs.values())
tmpl = p.VM.get_by_name_label(s, "Other install media")["Value"][0]
vm = p.VM.clone(s, tmpl, "py-vm")["Value"]
out["mem"] = p.VM.get_memory_static_max(s, vm)["Value"]
out["start_template"] = p.VM.start(s, tmpl, False, False)
out["hard_shutdown_halted"] = p.VM.hard_shutdown(s, vm)
out["logout"] = p.session.logout(s)["Status"]
out["after_logout"] = p.pool.get_all(s)
print(json.dumps(out))
