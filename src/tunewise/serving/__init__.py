"""Serving: the prediction API, micro-batching, and the tester page (`tunewise serve`)."""
