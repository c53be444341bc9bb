"""Vendor adapters: one small module per vendor behind the interface in `base.py`.

The send service looks an adapter up by key (`registry.build_adapter`) and calls `send()`; it
never names a vendor. An adapter makes exactly one attempt and classifies its failure
(`VendorError.permanent` / `.outcome_unknown`); retries and fallback belong to the caller.
"""
