"""Archives and compressed streams: zip (with model-format detection), tar, 7z, and
gzip/bz2/xz/zlib/lz4. Members are scanned recursively with bounded depth, count and size."""

from __future__ import annotations

import io
import posixpath
import zlib
from collections import Counter
from typing import TYPE_CHECKING, Any, BinaryIO

from bastion import coverage
from bastion.findings import Confidence, Severity, Stage
from bastion.rules import Rule
from bastion.scan import zip_flavours
from bastion.scan.base import LINK_MEMBER, MALFORMED, POLYGLOT, ScanContext
from bastion.scan.identify import JOBLIB_ZFILE_HEADER, JOBLIB_ZFILE_PREFIX
from bastion.scan.source import Source, bytes_source, slice_opener
from bastion.scan.ziparchive import ZipFormatError, ZipReader, member_name_problem
from bastion.scan.zipmembers import CORRUPT_MEMBER, ENCRYPTED_MEMBER, scan_zip_member

if TYPE_CHECKING:
    import tarfile

PATH_ESCAPE = Rule(
    id="ARC001",
    title="Archive member escapes the extraction folder",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="model-code-execution",
    description="A member name is absolute or climbs out with '..' (zip-slip). Extracting the "
    "archive writes outside the target folder, e.g. over a Python file that is "
    "imported later.",
    remediation="Do not extract it with a tool that honours such names; rebuild the archive.",
)
READERS_DISAGREE = Rule(
    id="ARC009",
    title="Zip readers disagree on the archive's members",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="Python's zipfile and PyTorch's reader (miniz) resolve the end records "
    "differently (zip64 locator, offsets of prepended data), so one archive can show "
    "each loader a different set of members: a scanner built on one reader misses "
    "what the other loads. bastion scans the members of both views.",
    remediation="Rebuild the archive with a standard writer (torch.save, zipfile).",
)
DUPLICATE_MEMBER = Rule(
    id="ARC006",
    title="Archive lists the same member name twice",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="Two entries share a name: tools that read the first and loaders that read the "
    "last see different files. bastion scans both.",
    remediation="Rebuild the archive with unique names.",
)
NAME_DISAGREES = Rule(
    id="ARC007",
    title="Zip local and central names differ",
    severity=Severity.HIGH,
    confidence=Confidence.HIGH,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="The member's local header names a different file than the central directory. "
    "Python's zipfile refuses such members while PyTorch loads them, a known way to "
    "make scanners skip a payload.",
    remediation="Rebuild the archive.",
)
TRAILING_AFTER_STREAM = Rule(
    id="ARC008",
    title="Data after the end of a compressed stream",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.ARTIFACT,
    profile="masquerading",
    description="Bytes follow the end of a gzip/bz2/xz/zlib/lz4 stream. Readers differ on "
    "them (some continue into them, some stop), so they are content of their own; "
    "bastion scans them as such.",
    remediation="Re-create the file with the library's own writer.",
)

# the rules this module's checks emit (listed in bastion.catalogue)
RULES = (
    PATH_ESCAPE,
    READERS_DISAGREE,
    DUPLICATE_MEMBER,
    NAME_DISAGREES,
    TRAILING_AFTER_STREAM,
)

SPOOL_IN_MEMORY = 64 * 1024 * 1024


class ZipScanner:
    name = "zip"
    formats = ("zip",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        try:
            reader = ZipReader(source.open, source.size, ctx.limits.max_members)
        except ZipFormatError as exc:
            ctx.add(
                MALFORMED.finding(source.location, f"broken zip archive: {exc}", evidence=str(exc))
            )
            return
        directory = reader.directory
        if directory.truncated_listing:
            ctx.limit_hit(source.location, f"more than {ctx.limits.max_members} members")
        if directory.prefix_bytes > 0:
            ctx.add(
                POLYGLOT.finding(
                    source.location,
                    f"{directory.prefix_bytes} bytes precede the zip archive; the file is both "
                    "something else and a zip",
                    evidence=f"zip prefix of {directory.prefix_bytes} bytes",
                )
            )
            prefix = source.child(
                "<data before zip>",
                slice_opener(source, 0, directory.prefix_bytes),
                directory.prefix_bytes,
            )
            ctx.scan(prefix)
        disagreement = reader.disagreement()
        if disagreement:
            both_read = not reader.view_errors
            ctx.add(
                READERS_DISAGREE.finding(
                    source.location,
                    f"{disagreement}; every member of both views is scanned",
                    evidence=disagreement[:200],
                    severity=Severity.HIGH if both_read else Severity.MEDIUM,
                )
            )
        check_zip_entries(ctx, source, reader)
        for flavour in zip_flavours():  # torch, torch.package, Keras, skops (scan/__init__)
            if flavour.claims(source, reader):
                flavour.scan(ctx, source, reader)
                if flavour.exclusive:
                    return
        for entry in directory.entries:
            scan_zip_member(ctx, source, reader, entry)


def check_zip_entries(ctx: ScanContext, source: Source, reader: ZipReader) -> None:
    counts = Counter(e.name for e in reader.directory.entries)
    for name, count in sorted(counts.items()):
        if count > 1:
            ctx.add(
                DUPLICATE_MEMBER.finding(
                    source.location.model_copy(
                        update={"members": (*source.location.members, name)}
                    ),
                    f"'{name}' appears {count} times",
                    evidence=name,
                )
            )
    for entry in reader.directory.entries:
        where = source.location.model_copy(
            update={"members": (*source.location.members, entry.name)}
        )
        problem = member_name_problem(entry.name)
        if problem:
            ctx.add(PATH_ESCAPE.finding(where, f"member name is an {problem}", evidence=entry.name))
        if entry.is_symlink:
            ctx.add(LINK_MEMBER.finding(where, "member is a symbolic link", evidence=entry.name))
        try:
            local = reader.locate(entry)
        except ZipFormatError as exc:
            ctx.add(CORRUPT_MEMBER.finding(where, str(exc), evidence=entry.name))
            continue
        if local.local_name != entry.raw_name:
            ctx.add(
                NAME_DISAGREES.finding(
                    where,
                    f"local header says {local.local_name[:200]!r}",
                    evidence=f"{entry.name} / {local.local_name[:200].decode('latin-1')}",
                )
            )


# --- tar -------------------------------------------------------------------------------------


class TarScanner:
    name = "tar"
    formats = ("tar",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        import tarfile

        with source.open() as handle:
            try:
                archive = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115
            except (tarfile.TarError, EOFError, OSError) as exc:
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"broken tar archive: {exc}", evidence=str(exc)
                    )
                )
                return
            members: list[tarfile.TarInfo] = []
            complete = True
            try:
                for count, info in enumerate(archive):
                    if count >= ctx.limits.max_members:
                        ctx.limit_hit(
                            source.location, f"more than {ctx.limits.max_members} members"
                        )
                        complete = False
                        break
                    members.append(info)
            except (tarfile.TarError, EOFError, OSError, ValueError, OverflowError) as exc:
                # ValueError: a member size so large that tarfile's next header offset does
                # not fit a file offset (seek refuses it)
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"tar archive breaks: {exc}", evidence=str(exc)
                    )
                )
            names = {posixpath.normpath(m.name) for m in members}  # as tar.extract(name) finds
            legacy_torch = {"pickle", "storages", "tensors"} <= names
            for info in members:
                self._member(ctx, source, archive, info, legacy_torch)
            if archive.offset < 0:  # a member's size below zero (base-256): no GNU tar reads it
                ctx.add(
                    MALFORMED.finding(
                        source.location,
                        "a tar member's size is negative",
                        evidence=f"tarfile's next header offset {archive.offset}",
                    )
                )
            elif complete and archive.offset <= source.size:  # (past the end: nothing after)
                self._after_end(ctx, source, handle, archive.offset)

    @staticmethod
    def _after_end(ctx: ScanContext, source: Source, handle: BinaryIO, end: int) -> None:
        """tarfile stops quietly at the first header it cannot parse; GNU tar skips to the
        next valid header and extracts the rest. Anything but zeros after tarfile's end is
        reported, and the archive is read again from the next header GNU tar would find."""
        from bastion.scan.identify import looks_like_tar_header

        handle.seek(end)
        position = end
        while position < source.size:
            ctx.check_time()
            block = handle.read(1 << 16)
            if not block:
                return
            if block.strip(b"\x00"):
                break
            position += len(block)
        else:
            return
        ctx.add(
            MALFORMED.finding(
                source.location,
                f"Python's tarfile ends at byte {end}, but data follows; GNU tar "
                "skips to the next header and extracts it (scanned)",
                evidence=f"tar data after byte {end}",
            )
        )
        offset = end + 512
        while offset + 512 <= source.size:
            ctx.check_time()
            handle.seek(offset)
            window = handle.read(1 << 20)
            for start in range(0, len(window) - 511, 512):
                if looks_like_tar_header(window[start : start + 512]):
                    found = offset + start
                    length = source.size - found
                    ctx.scan(
                        source.child(
                            f"<tar resumed at byte {found}>",
                            slice_opener(source, found, length),
                            length,
                        ),
                        "tar",
                    )
                    return
            offset += max(512, len(window) // 512 * 512)

    def _member(
        self,
        ctx: ScanContext,
        source: Source,
        archive: tarfile.TarFile,
        info: tarfile.TarInfo,
        legacy_torch: bool,
    ) -> None:
        where = source.location.model_copy(
            update={"members": (*source.location.members, info.name)}
        )
        problem = member_name_problem(info.name)
        if problem:
            ctx.add(PATH_ESCAPE.finding(where, f"member name is an {problem}", evidence=info.name))
        if info.issym() or info.islnk():
            ctx.add(
                LINK_MEMBER.finding(
                    where,
                    f"{'symbolic' if info.issym() else 'hard'} link to {info.linkname!r}",
                    evidence=f"{info.name} -> {info.linkname}",
                )
            )
            return
        if info.isdev() or info.isfifo():
            ctx.add(
                LINK_MEMBER.finding(
                    where, "device or FIFO member", evidence=info.name, severity=Severity.MEDIUM
                )
            )
            return
        if info.isdir():
            return  # any other type (even an unknown one) is extracted as a regular file
        if info.issparse():
            # GNU sparse: the extracted file (what torch's tar.extract writes) interleaves
            # the stored chunks with holes of zeros; read it the way tarfile extracts it
            content = _read_extracted(ctx, archive, info)
            child = source.child(info.name, lambda: io.BytesIO(content), len(content))
        else:
            start = info.offset_data
            length = min(info.size, max(0, source.size - start))
            child = source.child(info.name, slice_opener(source, start, length), length)
        if legacy_torch and posixpath.normpath(info.name) in (
            "pickle",
            "sys_info",
            "storages",
            "tensors",
        ):
            from bastion.scan.pickle import scan_pickle

            ctx.formats.append("pickle")
            ctx.guarded(
                child,
                lambda: scan_pickle(
                    ctx, child, trailing_ok=posixpath.normpath(info.name) in ("storages", "tensors")
                ),
                "tar",
            )
            return
        ctx.scan(child)


def _read_extracted(ctx: ScanContext, archive: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    stream = archive.extractfile(info)
    if stream is None:
        return b""
    pieces: list[bytes] = []
    while True:
        ctx.check_time()
        piece = stream.read(1 << 20)
        if not piece:
            return b"".join(pieces)
        ctx.charge(len(piece))
        pieces.append(piece)


# --- 7z --------------------------------------------------------------------------------------


class SevenZipScanner:
    name = "7z"
    formats = ("7z",)

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        try:
            import py7zr
            from py7zr.io import BytesIOFactory
        except ImportError:
            ctx.skip(
                source.location,
                "7z archive not opened: py7zr is not installed",
                coverage.FORMAT_NEEDS_EXTRA,
                "archives",
            )
            ctx.incomplete = True
            return
        handle = source.open()
        try:
            try:
                archive = py7zr.SevenZipFile(handle, mode="r")
                infos = archive.list()
                encrypted = archive.needs_password()
            except py7zr.exceptions.PasswordRequired:
                encrypted = True
            except Exception as exc:  # py7zr raises many types on hostile input
                ctx.add(
                    MALFORMED.finding(
                        source.location, f"broken 7z archive: {exc}", evidence=str(exc)[:200]
                    )
                )
                return
            if encrypted:
                ctx.add(
                    ENCRYPTED_MEMBER.finding(
                        source.location,
                        "encrypted 7z archive: its content could not be inspected, "
                        "so it cannot be judged",
                        evidence=source.name,
                    )
                )
                ctx.skip(
                    source.location,
                    "encrypted archive: content cannot be inspected",
                    coverage.ENCRYPTED,
                )
                ctx.incomplete = True
                return
            if len(infos) > ctx.limits.max_members:
                ctx.limit_hit(source.location, f"more than {ctx.limits.max_members} members")
                infos = infos[: ctx.limits.max_members]
            files = []
            for info in infos:
                where = source.location.model_copy(
                    update={"members": (*source.location.members, info.filename)}
                )
                problem = member_name_problem(info.filename)
                if problem:
                    ctx.add(
                        PATH_ESCAPE.finding(
                            where, f"member name is an {problem}", evidence=info.filename
                        )
                    )
                if getattr(info, "is_symlink", False):
                    ctx.add(
                        LINK_MEMBER.finding(
                            where, "member is a symbolic link", evidence=info.filename
                        )
                    )
                elif not info.is_directory:
                    files.append(info)
            declared = sum(int(i.uncompressed or 0) for i in files)
            ctx.charge(declared)
            per_file = max(1, ctx.limits.max_decompressed - ctx.inflated + declared)
            factory = BytesIOFactory(per_file)
            stopped = ""
            try:
                archive.extract(targets=[i.filename for i in files], factory=factory)
            except Exception as exc:
                stopped = f"extraction stopped ({str(exc)[:200]}); "
                ctx.add(
                    CORRUPT_MEMBER.finding(
                        source.location,
                        f"7z members cannot be extracted: {exc}",
                        evidence=str(exc)[:200],
                    )
                )
            # every product py7zr extracted, under the (sanitised, de-duplicated) name it
            # writes it to: "./model.pkl" becomes "model.pkl", a second "a" becomes "a_0"
            products = dict(factory.products)
            if stopped or len(products) < len(files):
                # what py7zr did not extract (or cut short) was not checked
                ctx.skip(
                    source.location,
                    f"{stopped}{len(files) - len(products)} of {len(files)} listed member(s) "
                    "could not be extracted and were not checked"
                    + (", and what was extracted may be cut short" if stopped else ""),
                    coverage.PARTIAL,
                )
                ctx.incomplete = True
            for name, product in sorted(products.items()):
                data = product.getvalue() if hasattr(product, "getvalue") else product.read()
                ctx.scan(
                    bytes_source(
                        data,
                        name,
                        depth=source.depth + 1,
                        location=source.location.model_copy(
                            update={"members": (*source.location.members, name)}
                        ),
                    )
                )
        finally:
            handle.close()


# --- compressed streams ----------------------------------------------------------------------

# a new stream of the same format may follow the end of one: the loaders' readers continue
# into it (gzip members, bz2 and xz streams, lz4 frames)
_NEXT_STREAM: dict[str, tuple[bytes, ...]] = {
    "gzip": (b"\x1f\x8b",),
    "bz2": (b"BZh",),
    "xz": (b"\xfd7zXZ\x00",),
    "lz4": (b"\x04\x22\x4d\x18",),
}


class CompressedScanner:
    name = "compressed"
    formats = ("gzip", "bz2", "xz", "lzma", "zlib", "lz4", "zstd")

    def scan(self, ctx: ScanContext, source: Source, fmt: str) -> None:
        import tempfile

        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            error, trailing = self._inflate(ctx, source, fmt, spool)  # type: ignore[arg-type]
            size = spool.tell()
            if error:
                ctx.add(
                    MALFORMED.finding(
                        source.location,
                        f"{fmt} stream is corrupt after {size} bytes: {error}",
                        evidence=error,
                    )
                )
            if trailing is not None:
                self._trailing(ctx, source, fmt, trailing)
            if size == 0:
                return
            spool.seek(0)
            data_holder: BinaryIO = spool  # type: ignore[assignment]

            def opener() -> BinaryIO:
                data_holder.seek(0)
                return _NonClosing(data_holder)  # type: ignore[return-value]

            ctx.scan(source.child(f"<{fmt}-decompressed>", opener, size))

    @staticmethod
    def _trailing(ctx: ScanContext, source: Source, fmt: str, start: int) -> None:
        """Bytes after the end of the compressed stream are content too: another reader, or
        the same one on a stream it does not stop at, reads them."""
        with source.open() as handle:  # zero padding is fine, wherever it ends
            handle.seek(start)
            while True:
                ctx.check_time()
                block = handle.read(1 << 20)
                if not block:
                    return
                if block.strip(b"\x00"):
                    start += len(block) - len(block.lstrip(b"\x00"))
                    break
                start += len(block)
        length = source.size - start
        child = source.child(f"<after {fmt} stream>", slice_opener(source, start, length), length)
        ctx.add(
            TRAILING_AFTER_STREAM.finding(
                source.location,
                f"{length} bytes follow the end of the {fmt} stream (scanned)",
                evidence=f"{fmt} stream ends at byte {start}",
            )
        )
        ctx.scan(child)

    @staticmethod
    def _decompressor(ctx: ScanContext, source: Source, fmt: str) -> Any:
        import bz2
        import lzma

        if fmt == "lz4":
            try:
                import lz4.frame  # type: ignore[import-not-found]
            except ImportError:
                ctx.skip(
                    source.location,
                    "lz4 stream not opened: the lz4 package is not installed",
                    coverage.FORMAT_NEEDS_EXTRA,
                    "archives",
                )
                ctx.incomplete = True
                return None
            return lz4.frame.LZ4FrameDecompressor()
        if fmt in ("gzip", "zlib"):
            return zlib.decompressobj(zlib.MAX_WBITS | 32)
        if fmt == "bz2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()  # xz and raw .lzma ("alone") streams

    def _inflate(
        self, ctx: ScanContext, source: Source, fmt: str, out: BinaryIO
    ) -> tuple[str | None, int | None]:
        """Inflate every consecutive stream into `out`. Returns (error, offset of the bytes that
        follow the last stream, if any)."""
        import lzma

        if fmt == "zstd":
            return self._inflate_zstd(ctx, source, out), None
        decompressor = self._decompressor(ctx, source, fmt)
        if decompressor is None:
            return None, None
        with source.open() as handle:
            position = 0
            if fmt == "zlib" and handle.read(2) == JOBLIB_ZFILE_PREFIX:
                # joblib < 0.10: "ZF", a hex length, maybe one space, then the zlib stream
                handle.seek(JOBLIB_ZFILE_HEADER)
                position = JOBLIB_ZFILE_HEADER + (handle.read(1) == b" ")
            handle.seek(position)
            while True:
                ctx.check_time()
                chunk = handle.read(1 << 20)
                position += len(chunk)
                if not chunk:
                    break
                try:
                    while chunk:
                        piece = decompressor.decompress(chunk, 1 << 22)
                        ctx.charge(len(piece))
                        out.write(piece)
                        tail = getattr(decompressor, "unconsumed_tail", b"")
                        if tail:
                            chunk = tail
                            continue
                        if decompressor.eof:
                            rest = decompressor.unused_data
                            while fmt == "gzip" and not rest.lstrip(b"\x00"):
                                # GzipFile skips any run of zeros between members
                                ctx.check_time()
                                rest = handle.read(1 << 20)
                                position += len(rest)
                                if not rest:
                                    return None, None
                            if fmt == "gzip":
                                rest = rest.lstrip(b"\x00")
                            if not rest:
                                rest = handle.read(1 << 20)
                                position += len(rest)
                                if not rest:
                                    return None, None
                            if rest.startswith(_NEXT_STREAM.get(fmt, ())) and _NEXT_STREAM.get(fmt):
                                decompressor = self._decompressor(ctx, source, fmt)
                                chunk = rest
                                continue
                            return None, position - len(rest)
                        if getattr(decompressor, "needs_input", True):
                            break
                        chunk = b""
                except (
                    zlib.error,
                    OSError,
                    lzma.LZMAError,
                    EOFError,
                    ValueError,
                    RuntimeError,
                ) as exc:
                    return str(exc), None
        if not decompressor.eof:
            return "stream ends before its end marker", None
        return None, None

    @staticmethod
    def _inflate_zstd(ctx: ScanContext, source: Source, out: BinaryIO) -> str | None:
        """Every frame, as zstandard's reader (pandas' .zst) returns them."""
        try:
            import zstandard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            ctx.skip(
                source.location,
                "zstd stream not opened: the zstandard package is not installed",
                coverage.FORMAT_NEEDS_EXTRA,
                "archives",
            )
            ctx.incomplete = True
            return None
        with source.open() as handle:
            reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
            try:
                while True:
                    ctx.check_time()
                    piece = reader.read(1 << 20)
                    if not piece:
                        return None
                    ctx.charge(len(piece))
                    out.write(piece)
            except zstandard.ZstdError as exc:
                return str(exc)


class _NonClosing(io.RawIOBase):
    """Lets several readers share one spooled buffer."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        super().close()
