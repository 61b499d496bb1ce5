"""Secrets at rest: the key file, encrypt/decrypt, clear errors, masking."""

from __future__ import annotations

import logging
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pywats_client.config.secrets import SecretBox, mask
from pywats_client.errors import SecretError

TOKEN = "dXNlcjpzM2NyZXQtdmFsdWUtMTIzNDU2Nzg="


def test_encrypt_creates_a_private_key_file_and_round_trips(tmp_path: Path) -> None:
    key = tmp_path / "inst" / "secret.key"
    box = SecretBox(key)
    stored = box.encrypt(TOKEN)
    assert stored.startswith("fernet:")
    assert TOKEN not in stored
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert SecretBox(key).decrypt(stored) == TOKEN  # a fresh box reads the same key file


def test_encrypt_reuses_an_existing_key(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    SecretBox(key).encrypt("a")
    first = key.read_bytes()
    SecretBox(key).encrypt("b")
    assert key.read_bytes() == first


def test_is_encrypted() -> None:
    assert SecretBox.is_encrypted("fernet:gAAAA")
    assert not SecretBox.is_encrypted(TOKEN)
    assert not SecretBox.is_encrypted("")


def test_a_hand_written_plain_value_is_returned_as_is_without_a_key(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    assert SecretBox(key).decrypt(TOKEN) == TOKEN
    assert not key.exists()  # reading a plain value never creates a key


def test_missing_key_file_names_both_files_and_the_fix(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    stored = SecretBox(key).encrypt(TOKEN)
    key.unlink()
    with pytest.raises(SecretError) as caught:
        SecretBox(key, config_path=tmp_path / "config.json").decrypt(stored)
    text = str(caught.value)
    assert str(tmp_path / "config.json") in text
    assert str(key) in text
    assert "missing" in text
    assert "restore secret.key from backup" in text
    assert "pywats-client config set api_token" in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_wrong_key_is_a_clear_error_not_a_plaintext_fallback(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    stored = SecretBox(key).encrypt(TOKEN)
    key.write_bytes(Fernet.generate_key())
    with pytest.raises(SecretError) as caught:
        SecretBox(key).decrypt(stored)
    text = str(caught.value)
    assert "cannot be decrypted" in text and str(key) in text
    assert "restore secret.key from backup" in text
    assert TOKEN not in text and stored not in text


def test_edited_ciphertext_is_a_clear_error(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    stored = SecretBox(key).encrypt(TOKEN)
    with pytest.raises(SecretError, match="cannot be decrypted"):
        SecretBox(key).decrypt(stored[:-6] + "AAAAAA")


def test_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    stored = SecretBox(key).encrypt(TOKEN)
    key.write_text("not a key\n")
    with pytest.raises(SecretError, match="is damaged"):
        SecretBox(key).decrypt(stored)


def test_key_file_that_cannot_be_created_is_a_secret_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SecretError, match="cannot create the key file"):
        SecretBox(blocker / "secret.key").encrypt(TOKEN)


def test_loose_key_permissions_warn_once(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    key = tmp_path / "loose.key"
    stored = SecretBox(key).encrypt(TOKEN)
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="pywats_client.config.secrets"):
        SecretBox(key).decrypt(stored)
        SecretBox(key).decrypt(stored)
    warnings = [r for r in caplog.records if "chmod 600" in r.getMessage()]
    assert len(warnings) == 1
    assert str(key) in warnings[0].getMessage() and "0644" in warnings[0].getMessage()
    assert TOKEN not in caplog.text


def test_private_key_file_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                        ) -> None:
    key = tmp_path / "private.key"
    stored = SecretBox(key).encrypt(TOKEN)
    with caplog.at_level(logging.WARNING, logger="pywats_client.config.secrets"):
        SecretBox(key).decrypt(stored)
    assert "chmod" not in caplog.text


def test_racing_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    start = threading.Barrier(8)
    results: list[str] = []
    lock = threading.Lock()

    def encrypt(n: int) -> None:
        start.wait(timeout=10)
        stored = SecretBox(key).encrypt(f"token-{n}")
        with lock:
            results.append(stored)

    threads = [threading.Thread(target=encrypt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(results) == 8
    reader = SecretBox(key)
    assert sorted(reader.decrypt(s) for s in results) == [f"token-{n}" for n in range(8)]
    assert [p.name for p in tmp_path.iterdir()] == ["secret.key"]  # no temporary leftovers


def test_repr_shows_no_key_material(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    box = SecretBox(key)
    box.encrypt(TOKEN)
    assert key.read_text().strip() not in repr(box)


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("", ""),
        ("abc", "****"),
        ("x" * 16, "****"),
        ("x" * 13 + "abcd", "****"),  # nothing of a long one either
        (TOKEN, "****"),
    ],
)
def test_mask(secret: str, shown: str) -> None:
    assert mask(secret) == shown
