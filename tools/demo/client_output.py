"""Turns edge-client's JSON lines into the demo's readable lines.

  edge-client info ... | /usr/bin/python3 -m tools.demo.client_output info
  edge-client classify ... | /usr/bin/python3 -m tools.demo.client_output classify
"""

import json
import sys


def info(line: str) -> str:
    i = json.loads(line)
    routing = i.get("routing") or "dense"
    return (f"{i['name']} ({i['precision']}, routing {routing}, "
            f"{i['num_classes']} classes): {i.get('description', '')}")


def classify(line: str) -> str:
    r = json.loads(line)
    if "error" in r:
        return f"{r['file']}: {r['error']['code']}: {r['error']['message']}"
    top = r["top"][0]
    experts = " ".join(f"L{e['layer']}:{e.get('experts', [])}"
                       for e in r.get("experts", []))
    return (f"{r['file']:36s} -> {top['label']:12s} {top.get('score', 0):.3f}"
            f"  experts {experts}")


def main() -> int:
    format_line = {"info": info, "classify": classify}[sys.argv[1]]
    for line in sys.stdin:
        if line.strip():
            print(format_line(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
