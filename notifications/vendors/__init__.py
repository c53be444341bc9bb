"""Vendor adapters: one small module per vendor behind the interface in `base.py`.

The send service looks an adapter up by key (`registry.build_adapter`) and calls `send()`; it
never names a vendor. An adapter makes exactly one attempt and classifies its failure
by cause (`VendorError.permanent`: the recipient or message; `.misconfigured`: the vendor's
own configuration; `.outcome_unknown`; else transient); retries and fallback belong to the caller.
"""
