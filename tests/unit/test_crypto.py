from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag

from shared import crypto


def test_sealed_data_opens_only_with_its_key_and_subject() -> None:
    key = crypto.new_key()
    sealed = crypto.seal(key, [{"email": "ann@example.org"}], subject="r1")
    assert "ann" not in sealed
    assert crypto.open_sealed(key, sealed, subject="r1") == [{"email": "ann@example.org"}]
    with pytest.raises(InvalidTag):
        crypto.open_sealed(key, sealed, subject="r2")
    with pytest.raises(crypto.KeyErased):
        crypto.open_sealed(None, sealed, subject="r1")
