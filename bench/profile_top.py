"""The top frames of a py-spy profile in raw (collapsed) format: where the sampled CPU went.

    python -m bench.profile_top bench/results/<run>-cpu/py-spy-web.txt [--top 25] [--match checkout]

Each line of a raw profile is a stack (frames joined by `;`, outermost first) and a sample
count. A frame's *inclusive* share is the samples of stacks it appears in (counted once per
stack), its *self* share the samples where it is the innermost frame. Frames are named
`function (file)` without line numbers, so a function's lines add up.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# "function (path/to/file.py:123)" -> "function (to/file.py)"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """A frame without its line number and with its path cut to the last two parts."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = "/".join(Path(match["path"]).parts[-2:])
    return f"{match['function']} ({path})"


@dataclass
class Profile:
    total: int
    inclusive: Counter[str]
    self_samples: Counter[str]

    def share(self, samples: int) -> float:
        return 100.0 * samples / self.total if self.total else 0.0


def profile_read(lines: Iterable[str]) -> Profile:
    """Parse raw py-spy lines; malformed lines (no trailing count) are skipped."""
    total = 0
    inclusive: Counter[str] = Counter()
    self_samples: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [frame_name(f) for f in stack.split(";") if f]
        total += samples
        for name in set(frames):
            inclusive[name] += samples
        if frames:
            self_samples[frames[-1]] += samples
    return Profile(total, inclusive, self_samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw files (added together)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match", default="", help="only frames whose name contains this text")
    args = parser.parse_args()
    lines: list[str] = []
    for path in args.profiles:
        lines += path.read_text(errors="replace").splitlines()
    profile = profile_read(lines)
    print(f"{profile.total} samples")
    print(f"{'inclusive %':>11} {'self %':>7}  frame")
    ranked = [(name, n) for name, n in profile.inclusive.most_common() if args.match in name]
    for name, samples in ranked[: args.top]:
        print(f"{profile.share(samples):11.1f} {profile.share(profile.self_samples[name]):7.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
