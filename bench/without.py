#!/usr/bin/env python3
"""Print a Caddyfile without some directives, to measure what they cost.

Usage: bench/without.py CADDYFILE DIRECTIVE... > variant.Caddyfile

Every line whose first word is one of the DIRECTIVEs is dropped, together
with its block when the line opens one (up to the matching closing brace).
For example, `bench/without.py Caddyfile authenticate rate_limit` is the
shipped configuration without authentication and rate limits.
"""
import sys


def without(lines, directives):
    out, depth = [], 0
    for line in lines:
        if depth:
            depth += line.count("{") - line.count("}")
            continue
        words = line.split()
        if words and words[0] in directives:
            depth = line.count("{") - line.count("}")
            continue
        out.append(line)
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        lines = f.readlines()
    kept = without(lines, set(sys.argv[2:]))
    if len(kept) == len(lines):
        sys.exit(f"none of {sys.argv[2:]} found in {sys.argv[1]}")
    sys.stdout.writelines(kept)


if __name__ == "__main__":
    main()
