"""Contact codes and public identities refuse what could not be shown or used safely: a name
with a lone surrogate, keys of the wrong length, and a code longer than any code can be."""

from __future__ import annotations

import dataclasses

import pytest

from meshmsg.core.identity import (
    Identity,
    b32encode,
    decode_contact_code,
    encode_contact_code,
)
from meshmsg.errors import InvalidContactCode
from meshmsg.sim.rng import SeededRng

PUBLIC = Identity.generate(SeededRng(1, "refusals")).public


def test_a_name_that_is_not_valid_unicode_is_refused() -> None:
    with pytest.raises(InvalidContactCode, match="not valid Unicode"):
        encode_contact_code(PUBLIC, name="bad \ud800 name")
    assert decode_contact_code(encode_contact_code(PUBLIC, name="fine")).name == "fine"


def test_public_identities_with_keys_of_the_wrong_length_are_refused() -> None:
    for field in ("identity_key", "noise_key", "e2e_key"):
        with pytest.raises(InvalidContactCode, match=f"{field} must be 32 bytes"):
            dataclasses.replace(PUBLIC, **{field: b"k" * 31})


def test_a_code_longer_than_any_contact_code_is_refused() -> None:
    code = encode_contact_code(PUBLIC, name="n" * 20)
    with pytest.raises(InvalidContactCode, match="too long"):
        decode_contact_code(code + b32encode(bytes(600)))
