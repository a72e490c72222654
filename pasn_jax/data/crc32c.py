"""CRC-32C (Castagnoli), as TFRecord frames its records with it, from google-crc32c's C extension (hardware CRC
instructions where the CPU has them). `crc32c(b"123456789") == 0xE3069283`; `masked_crc32c` is TFRecord's masked
form."""

import google_crc32c

if google_crc32c.implementation != "c":  # its pure-Python fallback is ~1000x slower: every record read checks CRCs
    raise ImportError("google-crc32c could not load its C extension; reinstall the pinned wheel "
                      "(pip install -r requirements.txt)")

_CRC_MASK_DELTA = 0xA282EAD8  # TFRecord's CRC masking constant

crc32c = google_crc32c.value


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C: the crc rotated right by 15 bits plus 0xA282EAD8, modulo 2**32."""
    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _CRC_MASK_DELTA) & 0xFFFFFFFF
