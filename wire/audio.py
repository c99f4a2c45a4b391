"""The one audio format inside the server: what every model takes and every route hands on."""

SAMPLE_RATE = 16000                      # Hz, mono
BYTES_PER_SECOND = SAMPLE_RATE * 2       # 16-bit little-endian PCM
BYTES_PER_MS = BYTES_PER_SECOND // 1000
