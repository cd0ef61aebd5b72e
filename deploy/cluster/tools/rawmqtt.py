#!/usr/bin/env python3
"""Tiny raw MQTT 3.1.1 client for evidence: shows DUP flags, lets us withhold PUBACKs.
usage: rawmqtt.py PORT CLIENTID TOPIC [--noack] [--secs S] [--user U --pass P] [--clean]"""
import socket, struct, sys, time, argparse
ap=argparse.ArgumentParser(); ap.add_argument("port",type=int); ap.add_argument("cid"); ap.add_argument("topic")
ap.add_argument("--noack",action="store_true"); ap.add_argument("--secs",type=float,default=3); ap.add_argument("--clean",action="store_true")
ap.add_argument("--user"); ap.add_argument("--password"); ap.add_argument("--nosub",action="store_true"); ap.add_argument("--quiet",action="store_true")
a=ap.parse_args()
def s(b): b=b.encode() if isinstance(b,str) else b; return struct.pack(">H",len(b))+b
def rl(n):
    o=b""
    while True:
        d=n%128; n//=128
        if n: d|=128
        o+=bytes([d])
        if not n: return o
flags=(0x02 if a.clean else 0)|(0x80 if a.user else 0)|(0x40 if a.password else 0)
vh=s("MQTT")+bytes([4,flags])+struct.pack(">H",60)
pl=s(a.cid)+(s(a.user) if a.user else b"")+(s(a.password) if a.password else b"")
sk=socket.create_connection(("127.0.0.1",a.port)); sk.settimeout(0.5)
sk.sendall(bytes([0x10])+rl(len(vh)+len(pl))+vh+pl)
buf=b""; end=time.time()+a.secs; sent_sub=False; n=0; dups=0
def packets():
    global buf
    while True:
        if len(buf)<2: return
        mult=1; ln=0; i=1
        while True:
            if i>=len(buf): return
            c=buf[i]; ln+=(c&127)*mult; mult*=128; i+=1
            if not c&128: break
        if len(buf)<i+ln: return
        p=buf[:i+ln]; buf=buf[i+ln:]; yield p[0], p[i:]
while time.time()<end:
    try:
        d=sk.recv(65536)
        if not d: print("CLOSED by server"); break
        buf+=d
    except socket.timeout: pass
    for h,body in packets():
        t=h>>4
        if t==2:
            print("CONNACK session_present=%d rc=%d"%(body[0]&1,body[1]))
            if body[1]!=0: sys.exit(1)
            if not a.nosub:
                sp=struct.pack(">H",1)+s(a.topic)+bytes([1]); sk.sendall(bytes([0x82])+rl(len(sp))+sp)
        elif t==9: print("SUBACK", list(body[2:]))
        elif t==3:
            dup=(h>>3)&1; q=(h>>1)&3; tl=struct.unpack(">H",body[:2])[0]; top=body[2:2+tl]; r=body[2+tl:]
            pid=None
            if q: pid=struct.unpack(">H",r[:2])[0]; r=r[2:]
            n+=1; dups+=dup
            if not a.quiet: print("PUBLISH dup=%d qos=%d pid=%s topic=%s payload=%r"%(dup,q,pid,top.decode(),r[:40]))
            if q==1 and not a.noack: sk.sendall(bytes([0x40,2])+struct.pack(">H",pid))
print("TOTAL publishes=%d with_dup=%d"%(n,dups))
sk.close()
