"""``python -m stripelocal``: serve the local Stripe API (see README.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from stripelocal.server import LocalStripe


def main() -> None:
    parser = argparse.ArgumentParser(prog="stripelocal", description="A local server for Stripe's API subset "
                                     "VerseFlow uses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--state-file", type=Path, help="keep state in this JSON file across restarts")
    parser.add_argument("--webhook-url", help="deliver every event to this URL")
    parser.add_argument("--webhook-secret", default=os.environ.get("STRIPELOCAL_WEBHOOK_SECRET"),
                        help="signing secret (whsec_...) of that endpoint; env STRIPELOCAL_WEBHOOK_SECRET")
    args = parser.parse_args()
    api_key = os.environ.get("STRIPELOCAL_API_KEY")  # not an argument: it would show in `ps`
    server = LocalStripe(api_key=api_key, host=args.host, port=args.port, state_file=args.state_file,
                         webhook_url=args.webhook_url, webhook_secret=args.webhook_secret)
    print(f"stripelocal on {server.url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
