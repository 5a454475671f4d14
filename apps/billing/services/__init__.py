"""Writes of the billing app: Stripe webhooks (``webhooks``), subscriptions mirrored from Stripe
(``subscriptions``), the entitlement ledger (``entitlements``), checkout and platform access sync."""
