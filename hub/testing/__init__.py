"""Test helpers for connector authors: sandbox serving, fake data, the conformance kit."""
