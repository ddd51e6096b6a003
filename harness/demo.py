"""``make demo``'s last step: serve a model, send three reviews, print the answers, stop the server."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.server import http_json, running_server

REVIEWS = {
    "clearly positive": "I love this dress! The fabric is soft, it fits perfectly and I got so many compliments.",
    "clearly negative": "Terrible quality. The seams ripped after one wash and the color faded. Returning it.",
    "lukewarm": "It's okay. The color is nice but the fit is a bit boxy and the material feels thin.",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=Path("models/reviews/latest"))
    parser.add_argument("--text-column", default="review_body")
    args = parser.parse_args(argv)

    with running_server(args.model) as server:
        print(f"server ready at {server.url} after {server.cold_start_s:.1f} s")
        records = [{args.text_column: text} for text in REVIEWS.values()]
        print(f"POST {server.url}/predict")
        status, answers = http_json(f"{server.url}/predict", {"records": records})
        if status != 200 or not isinstance(answers, list):
            print(f"unexpected answer {status}: {answers}", file=sys.stderr)
            return 1
        for (kind, text), answer in zip(REVIEWS.items(), answers, strict=True):
            print(f"\n[{kind}] {text}")
            print(
                f"  -> {answer['predicted_label']} (p={answer['probability']:.2f})  "
                f"{json.dumps({k: round(v, 3) for k, v in answer['probabilities'].items()})}"
            )
    print("\nserver stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
