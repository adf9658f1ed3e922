# Copyright (C) 2026 bts-tf authors. SPDX-License-Identifier: GPL-3.0-or-later
"""Download a public Google-Drive file, resumably (used for the NYU ``sync.zip``, design §7.1).

    python -m tools.download_from_gdrive FILE_ID DEST

Large Drive files answer the plain link with a "can't scan for viruses" page; the direct
``drive.usercontent.google.com`` endpoint with ``confirm=t`` skips it. Data goes to ``DEST.part``
(continued with an HTTP Range request after an interruption) and is renamed to DEST when complete.
"""
from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from typing import Optional, Sequence

from tqdm import tqdm

URL = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
CHUNK = 1 << 20


def download(file_id: str, dest: str) -> str:
    """Fetch Drive file ``file_id`` to ``dest`` (nothing to do if it exists)."""
    if os.path.isfile(dest):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + ".part"
    start = os.path.getsize(part) if os.path.isfile(part) else 0
    request = urllib.request.Request(URL.format(id=file_id), headers={"Range": f"bytes={start}-"})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416:  # the .part file is already complete
            os.replace(part, dest)
            return dest
        raise SystemExit(f"error: Google Drive file {file_id}: HTTP {err.code} {err.reason}") from None
    except urllib.error.URLError as err:
        raise SystemExit(f"error: Google Drive file {file_id}: {err.reason}") from None
    if "text/html" in response.headers.get("Content-Type", ""):
        raise SystemExit(f"error: Google Drive returned a web page instead of file {file_id} "
                         "(quota exceeded or not public); download it in a browser to " + dest)
    mode = "ab" if response.status == 206 else "wb"  # 200: the server ignored the range
    total = response.headers.get("Content-Length")
    with open(part, mode) as handle, tqdm(total=int(total) if total else None, unit="B",
                                          unit_scale=True, desc=os.path.basename(dest)) as bar:
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                break
            handle.write(chunk)
            bar.update(len(chunk))
    os.replace(part, dest)
    return dest


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        raise SystemExit("usage: python -m tools.download_from_gdrive FILE_ID DEST")
    print(download(*argv))


if __name__ == "__main__":
    main()
