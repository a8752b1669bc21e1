import codecs

import pytest

from farense.textio import atomic_path, decode_bytes, looks_binary, write_text_atomic


@pytest.mark.parametrize(
    "data, encoding, text",
    [
        ("Época – «Farense»".encode("utf-8"), "utf-8", "Época – «Farense»"),
        (codecs.BOM_UTF8 + "São Luís".encode("utf-8"), "utf-8-sig", "São Luís"),
        ("Taça – “Leões”".encode("cp1252"), "cp1252", "Taça – “Leões”"),
        # 0x81 is undefined in cp1252: only latin-1 decodes it
        (b"Le\xf5es \x81", "latin-1", "Leões \x81"),
        (codecs.BOM_UTF16_LE + "Faro".encode("utf-16-le"), "utf-16", "Faro"),
    ],
)
def test_decode_detects_encoding(data, encoding, text):
    assert decode_bytes(data) == (text, encoding)


def test_binary_detection():
    assert looks_binary(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert not looks_binary("Farense".encode("utf-8"))
    assert not looks_binary(codecs.BOM_UTF16_LE + "Faro".encode("utf-16-le"))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomic(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("crash")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
