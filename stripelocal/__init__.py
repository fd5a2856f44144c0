"""A local server for the subset of Stripe's current API that VerseFlow uses. See README.md."""

from stripelocal.server import LocalStripe
from stripelocal.webhooks import sign

__all__ = ["LocalStripe", "sign"]
