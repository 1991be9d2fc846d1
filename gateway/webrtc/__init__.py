"""Browser calls: a WebRTC worker process on aiortc, the softphone page and its signalling.

The worker (gateway/webrtc/worker.py) is a process of its own because aiortc does Opus,
SRTP and DTLS in Python on an asyncio loop: a busy thread there must not stall pjsua2's
media clock in a SIP worker. Every call uses the same per-call chain (CallMedia) and the
same engine session (EngineLink, SessionInfo(transport="webrtc")) as a SIP call.

Signalling (HTTP on the supervisor's listener, forwarded to the worker's Unix socket):
  POST /webrtc/offer[?entry=NAME]        {"type": "offer", "sdp": ...}  → {"type": "answer", "sdp", "call_id"}
  POST /webrtc/calls/<call_id>/offer     a re-offer (hold: direction sendonly/inactive; resume: sendrecv)
  POST /webrtc/calls/<call_id>/hangup    ends the call
  POST /webrtc/calls/<call_id>/dtmf      {"digit": "5", "duration_ms": 160}
Full ICE, no trickle: the answer carries all our candidates and the offer must carry the
caller's (the page waits for its ICE gathering to complete before posting).
Status codes: 400 broken SDP or body, 404 unknown dialplan entry or call, 413 body too large,
503 (with Retry-After) at capacity, draining or without an engine.
The page itself uses no STUN/TURN: the gateway's candidates ([webrtc] host_addresses, or the
relay/reflexive ones from [webrtc] ice_servers) must be reachable from the browser. Browsers
open the microphone only on https or localhost: put a TLS proxy in front of the HTTP listener.
A dialplan entry's ring_ms does not apply (no ringing phase); TRANSFER is logged and ignored.

The data channel the caller opens (any label) carries JSON both ways:
  caller → gateway  {"type": "dtmf", "digit": "5", "duration_ms": 160}   DTMF (instead of RFC 4733,
                                                                          which aiortc does not receive)
                    {"type": "hangup"}
                    {"type": "ended_ack"}                                 "ended" reached the page
  gateway → caller  {"type": "state", "state": "listening"|"speaking"|"on hold", "caller_speaking": bool}
                    {"type": "ended", "reason": "..."}
When the gateway ends a call it waits (at most 2 s) for "ended_ack" before closing the peer
connection: closing it aborts the SCTP association, and a browser may drop a message it has
already acknowledged at the SCTP level but not yet handed to the page (seen under CPU load).
"""
