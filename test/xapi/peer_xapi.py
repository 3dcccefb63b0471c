#!/usr/bin/env python3
"""Independent XML-RPC peer for fbxen's XAPI client tests: CPython's stdlib xmlrpc.server, answering
with XAPI's envelopes ({Status, Value} / {Status, ErrorDescription}). Not XAPI and not fbxen's code.
Usage: peer_xapi.py HOST PORT [--slave-of MASTER]  (prints "READY <port>" once listening)
Methods: session.login_with_password, session.logout, echo (returns its params after the session),
big (returns an int64 as a string, the way XAPI does)."""
import sys, uuid
from xmlrpc.server import SimpleXMLRPCServer, SimpleXMLRPCRequestHandler

host, port = sys.argv[1], int(sys.argv[2])
slave_of = sys.argv[sys.argv.index("--slave-of") + 1] if "--slave-of" in sys.argv else None
sessions = set()

class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")
    def log_message(self, *a):
        pass

def ok(v):
    return {"Status": "Success", "Value": v}

def fail(code, *params):
    return {"Status": "Failure", "ErrorDescription": [code] + list(params)}

class Server(SimpleXMLRPCServer):
    def _dispatch(self, method, params):
        if method == "session.login_with_password":
            if slave_of:
                return fail("HOST_IS_SLAVE", slave_of)
            if list(params[:2]) != ["root", "peer-secret"] or params[3] != "fbxen":
                return fail("SESSION_AUTHENTICATION_FAILED", str(params[0]), "Authentication failure")
            s = "OpaqueRef:" + str(uuid.uuid4())
            sessions.add(s)
            return ok(s)
        if not params or params[0] not in sessions:
            return fail("SESSION_INVALID", str(params[0] if params else ""))
        if method == "session.logout":
            sessions.discard(params[0])
            return ok("")
        if method == "echo":
            return ok(list(params[1:]))
        if method == "big":
            return ok(str(2**40))
        return fail("MESSAGE_METHOD_UNKNOWN", method)

srv = Server((host, port), requestHandler=Handler, allow_none=False, logRequests=False)
print("READY %d" % srv.server_address[1], flush=True)
srv.serve_forever()
