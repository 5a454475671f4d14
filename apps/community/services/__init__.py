"""Writes to the community's rows, one module per concern (``linking``: platform accounts to portal members)."""
