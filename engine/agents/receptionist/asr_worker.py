"""The recognizer process: decodes caller turns off the engine's 20 ms loop.

pocketsphinx holds the GIL for a whole `process_raw` call (~0.1 s per second of speech,
measured: a thread decoding a 9 s turn kept the main thread from running for 1.3 s), so
it runs in its own process. Protocol, one JSON object per line: stdin gets
`{"id": N, "path": "/dev/shm/...pcm"}` (the turn as raw 16 kHz int16, a file so that the
engine never blocks on a full pipe); stdout answers `{"id": N, "text": ..., "decode_s": ...,
"audio_s": ...}`. The file is deleted once read. EOF on stdin (the engine is gone) ends it.

Run by engine/agents/receptionist/recognizer.py: `python -m engine.agents.receptionist.asr_worker --mode M`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from engine.agents.receptionist.asr import DEFAULT_MODE, MODES, make_decoder, transcribe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=MODES, default=DEFAULT_MODE)
    args = ap.parse_args(argv)
    decoder = make_decoder(args.mode)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            with open(req["path"], "rb") as f:
                pcm = f.read()
            os.unlink(req["path"])
            tr = transcribe(decoder, pcm)
            out = {"id": req["id"], "text": tr.text, "decode_s": tr.decode_s, "audio_s": tr.audio_s}
        except Exception as exc:  # one bad request must not end the recognizer for every call
            out = {"id": req.get("id"), "text": "", "decode_s": 0.0, "audio_s": 0.0, "error": str(exc)}
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
