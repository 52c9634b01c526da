"""The local SFTP drop box: what AWS Transfer Family is on AWS (infra/transfer.yaml).

An SFTP server on localhost (asyncssh) with one user per tenant, or several: each sees
its tenant's ``inbox/{tenant}/`` of the emulated bucket as ``/`` and nothing else (paths
are normalized against that root, so ``..`` cannot leave it). A file is written to the
bucket when the client closes it, then handed to ``on_upload(key)``, which raises the
same "Object Created" event the bucket raises on AWS.

Users live in ``<state>/sftp-users.json`` (passwords as scrypt hashes, public keys in
OpenSSH form), re-read on every login so ``sftp_user_add`` works while the server runs;
the host key is generated once into ``<state>/sftp_host_key``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import posixpath
import re
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import asyncssh

from rostersync.application.inbox import InboxReport, acceptable_name
from rostersync.errors import RostersyncError
from rostersync.storage import keys
from rostersync.storage.inbox import InboxObject
from rostersync.storage.ports import InboxObjectsPort

USERS_FILE = "sftp-users.json"
HOST_KEY_FILE = "sftp_host_key"
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# scrypt at n=2**14, r=8: ~16 MiB and tens of milliseconds per check, as hashlib allows.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_LOG = logging.getLogger("rostersync.local.sftp")
_USERS_LOCK = threading.Lock()
T = TypeVar("T")


class SftpUserError(RostersyncError, ValueError):
    """An SFTP user that cannot be added as asked."""


@dataclass(frozen=True)
class SftpUser:
    """One SFTP login (its secrets stay in the users file)."""

    username: str
    tenant: str
    has_password: bool
    public_keys: int


# ------------------------------------------------------------------------- the users


def _hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return {
        "scheme": "scrypt",
        **_SCRYPT,
        "salt": base64.b64encode(salt).decode(),
        "hash": base64.b64encode(digest).decode(),
    }


def _password_matches(stored: dict[str, Any] | None, password: str) -> bool:
    if not stored or stored.get("scheme") != "scrypt":
        # Spend the same time as a real check, so timing does not reveal unknown users.
        _hash_password(password, b"\0" * 16)
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=base64.b64decode(stored["salt"]),
        n=int(stored["n"]),
        r=int(stored["r"]),
        p=int(stored["p"]),
        dklen=32,
    )
    return hmac.compare_digest(digest, base64.b64decode(stored["hash"]))


def _users_path(state_dir: Path) -> Path:
    return Path(state_dir) / USERS_FILE


def _read_users(state_dir: Path) -> dict[str, dict[str, Any]]:
    path = _users_path(state_dir)
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return dict(loaded.get("users", {}))


def _write_users(state_dir: Path, users: dict[str, dict[str, Any]]) -> None:
    path = _users_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"users": users}, indent=2, sort_keys=True).encode()
    fd, temporary = tempfile.mkstemp(prefix=".sftp-users-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # mkstemp made it 0600: hashes are secrets too
            fh.write(body)
        os.replace(temporary, path)  # readers see the old file or the new, never half
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _public_key_text(public_key: str) -> str:
    try:
        key = asyncssh.import_public_key(public_key.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise SftpUserError(f"not an OpenSSH public key: {exc}") from None
    return _key_material(key.export_public_key("openssh").decode())


def _key_material(openssh: str) -> str:
    """An OpenSSH public key's type and data, without its comment (``ssh-keygen`` puts
    ``user@host`` there; a client offering the key sends none)."""
    return " ".join(openssh.split()[:2])


def sftp_user_add(
    state_dir: Path,
    tenant: str,
    username: str,
    password: str | None = None,
    public_key: str | None = None,
    *,
    rotate: bool = True,
) -> SftpUser:
    """Add an SFTP user for ``tenant``, or (``rotate``) give an existing one of the same
    tenant a new password and/or another public key. At least one of the two is needed.
    Without ``rotate`` an existing user is refused: nothing replaces a password unasked."""
    keys.check_tenant(tenant)
    if not _USERNAME.match(username):
        raise SftpUserError("a user name is 1-64 of A-Z a-z 0-9 . _ - (not starting with . _ -)")
    if not password and not public_key:
        raise SftpUserError("give a password, a public key or both")
    with _USERS_LOCK:
        users = _read_users(state_dir)
        entry = dict(users.get(username) or {"tenant": tenant, "public_keys": []})
        if entry["tenant"] != tenant:
            raise SftpUserError(f"user {username} belongs to another tenant")
        if username in users and not rotate:
            raise SftpUserError(
                f"SFTP user {username} already exists for tenant {tenant}; give --rotate to "
                "replace its password (or add the key), or choose another name"
            )
        if password:
            entry["password"] = _hash_password(password)
        if public_key:
            text = _public_key_text(public_key)
            if text not in entry["public_keys"]:
                entry["public_keys"] = [*entry["public_keys"], text]
        users[username] = entry
        _write_users(state_dir, users)
    return _describe(username, entry)


def sftp_user_remove(state_dir: Path, username: str) -> bool:
    """Remove an SFTP user; False if there was none of that name."""
    with _USERS_LOCK:
        users = _read_users(state_dir)
        if users.pop(username, None) is None:
            return False
        _write_users(state_dir, users)
    return True


def sftp_users(state_dir: Path) -> list[SftpUser]:
    """The SFTP users, by name (no secrets)."""
    return [_describe(name, entry) for name, entry in sorted(_read_users(state_dir).items())]


def sftp_users_of(state_dir: Path, tenant: str) -> list[SftpUser]:
    """The tenant's SFTP users, by name."""
    return [user for user in sftp_users(state_dir) if user.tenant == tenant]


def _describe(username: str, entry: dict[str, Any]) -> SftpUser:
    return SftpUser(
        username=username,
        tenant=str(entry["tenant"]),
        has_password="password" in entry,
        public_keys=len(entry.get("public_keys", [])),
    )


def host_key(state_dir: Path) -> asyncssh.SSHKey:
    """The server's host key: made once, so clients can pin it across restarts."""
    path = Path(state_dir) / HOST_KEY_FILE
    if path.is_file():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    return key


# ------------------------------------------------------------------ authentication


class _Login(asyncssh.SSHServer):
    """Password or public-key login against the users file, read afresh each time."""

    def __init__(self, state_dir: Path, connections: set[asyncssh.SSHServerConnection]) -> None:
        self._state_dir = state_dir
        self._connections = connections
        self._connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        self._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._connections.discard(self._connection)

    def begin_auth(self, username: str) -> bool:
        return True  # every login must authenticate

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        entry = _read_users(self._state_dir).get(username) or {}
        return _password_matches(entry.get("password"), password)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        entry = _read_users(self._state_dir).get(username) or {}
        offered = _key_material(key.export_public_key("openssh").decode())
        return any(
            hmac.compare_digest(offered, _key_material(known))
            for known in entry.get("public_keys", [])
        )


# ------------------------------------------------------------------- the file system


@dataclass
class _OpenFile:
    key: str
    spool: IO[bytes]
    writing: bool
    append: bool


def _dir_attrs() -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=stat.S_IFDIR | 0o755, size=0
    )


def _file_attrs(item: InboxObject) -> asyncssh.SFTPAttrs:
    moment = int(item.last_modified.timestamp())
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_REGULAR,
        permissions=stat.S_IFREG | 0o644,
        size=item.size,
        mtime=moment,
        atime=moment,
    )


class _TenantInbox(asyncssh.SFTPServer):
    """One SFTP session, confined to its user's tenant inbox in the bucket."""

    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        tenant: str | None,
        objects: InboxObjectsPort,
        on_upload: Callable[[str], object],
        executor: ThreadPoolExecutor,
    ) -> None:
        super().__init__(chan)
        self._tenant = tenant
        self._objects = objects
        self._on_upload = on_upload
        self._executor = executor

    # -- paths

    def _relative(self, path: bytes) -> str:
        """The path inside the tenant's inbox, '' for its root; never above it."""
        if self._tenant is None:
            raise asyncssh.SFTPPermissionDenied("no tenant for this user")
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise asyncssh.SFTPNoSuchFile("not a UTF-8 path") from None
        # Resolved against '/', '..' stops at the root: the inbox is all a user can name.
        normal = posixpath.normpath(posixpath.join("/", text)).lstrip("/")
        return "" if normal in ("", ".") else normal

    def _key(self, relative: str) -> str:
        """The key of a path: each name as the inbox accepts it (``my bundle (1).zip`` is
        ``my_bundle_1.zip``, for every operation alike), or a clear refusal."""
        segments = []
        for segment in relative.split("/"):
            accepted = acceptable_name(segment)
            if accepted is None:
                raise asyncssh.SFTPPermissionDenied(
                    f"the name {segment!r} cannot be stored: use letters, digits, '.', '_' "
                    "or '-' (other characters become '_')"
                )
            segments.append(accepted)
        return keys.inbox_prefix(str(self._tenant)) + "/".join(segments)

    def _root(self) -> str:
        return keys.inbox_prefix(str(self._tenant))

    async def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call, *args)
        except RostersyncError as exc:
            raise asyncssh.SFTPFailure(f"storage: {type(exc).__name__}") from None

    async def _lookup(self, relative: str) -> InboxObject | asyncssh.SFTPAttrs | None:
        """The object at ``relative``, directory attributes for a folder, or None."""
        if relative == "":
            return _dir_attrs()
        key = self._key(relative)
        item = await self._blocking(self._objects.find, key)
        if item is not None:
            return item
        if await self._blocking(self._objects.has_any, key + "/"):
            return _dir_attrs()
        return None

    # -- names and attributes

    def format_user(self, uid: int | None) -> str:
        return self._tenant or ""

    def format_group(self, gid: int | None) -> str:
        return "inbox"

    def realpath(self, path: bytes) -> bytes:
        return ("/" + self._relative(path)).encode()

    async def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        found = await self._lookup(self._relative(path))
        if found is None:
            raise asyncssh.SFTPNoSuchFile("no such file")
        return found if isinstance(found, asyncssh.SFTPAttrs) else _file_attrs(found)

    async def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return await self.stat(path)

    async def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self.stat(path)  # S3 keeps no modes or times of the client's: accepted, unused

    async def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        await self.stat(path)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        return None

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        opened = self._opened(file_obj)
        position = opened.spool.tell()
        size = opened.spool.seek(0, os.SEEK_END)
        opened.spool.seek(position)
        return asyncssh.SFTPAttrs(
            type=asyncssh.FILEXFER_TYPE_REGULAR,
            permissions=stat.S_IFREG | 0o644,
            size=size,
            mtime=int(time.time()),
        )

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        relative = self._relative(path)
        prefix = self._root() if relative == "" else self._key(relative) + "/"
        listing = await self._blocking(self._objects.list_folder, prefix)
        if relative and not listing.files and not listing.folders:
            raise asyncssh.SFTPNoSuchFile("no such directory")
        for name in (b".", b".."):
            yield asyncssh.SFTPName(name, attrs=_dir_attrs())
        for folder in listing.folders:
            yield asyncssh.SFTPName(folder[len(prefix) :].rstrip("/").encode(), attrs=_dir_attrs())
        for item in listing.files:
            if item.key != prefix:  # the folder's own marker object
                yield asyncssh.SFTPName(item.name.encode(), attrs=_file_attrs(item))

    # -- folders

    async def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        relative = self._relative(path)
        if relative == "" or await self._lookup(relative) is not None:
            raise asyncssh.SFTPFileAlreadyExists("already exists")
        # A marker object, as Transfer Family makes: S3 has no empty folders otherwise.
        await self._blocking(self._objects.put_bytes, self._key(relative) + "/", b"")

    async def rmdir(self, path: bytes) -> None:
        relative = self._relative(path)
        if relative == "":
            raise asyncssh.SFTPPermissionDenied("the inbox itself cannot be removed")
        prefix = self._key(relative) + "/"
        under = [item.key for item in await self._blocking(self._list_all, prefix)]
        if not under:
            raise asyncssh.SFTPNoSuchFile("no such directory")
        if under != [prefix]:
            raise asyncssh.SFTPDirNotEmpty("directory not empty")
        await self._blocking(self._objects.delete, prefix)

    def _list_all(self, prefix: str) -> list[InboxObject]:
        return list(self._objects.list_all(prefix))

    # -- files

    async def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> _OpenFile:
        relative = self._relative(path)
        if relative == "":
            raise asyncssh.SFTPFailure("the inbox is a directory")
        key = self._key(relative)
        found = await self._lookup(relative)
        if isinstance(found, asyncssh.SFTPAttrs):
            raise asyncssh.SFTPFailure("is a directory")
        writing = bool(pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND))
        if found is None and not (writing and pflags & asyncssh.FXF_CREAT):
            raise asyncssh.SFTPNoSuchFile("no such file")
        if found is not None and writing and pflags & asyncssh.FXF_EXCL:
            raise asyncssh.SFTPFileAlreadyExists("already exists")
        # Closed in close(), which the SFTP layer calls for every handle, even on a drop.
        spool = tempfile.TemporaryFile(prefix="rostersync-sftp-")  # noqa: SIM115
        if found is not None and not (writing and pflags & asyncssh.FXF_TRUNC):
            try:
                await self._blocking(self._objects.download, key, spool)
            except BaseException:
                spool.close()
                raise
        spool.seek(0)
        return _OpenFile(key, spool, writing, bool(pflags & asyncssh.FXF_APPEND))

    @staticmethod
    def _opened(file_obj: object) -> _OpenFile:
        if not isinstance(file_obj, _OpenFile):
            raise asyncssh.SFTPFailure("invalid handle")
        return file_obj

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        opened = self._opened(file_obj)
        opened.spool.seek(offset)
        return opened.spool.read(size)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        opened = self._opened(file_obj)
        if not opened.writing:
            raise asyncssh.SFTPPermissionDenied("opened for reading")
        if opened.append:
            opened.spool.seek(0, os.SEEK_END)
        else:
            opened.spool.seek(offset)  # clients send blocks in parallel, out of order
        opened.spool.write(data)
        return len(data)

    async def close(self, file_obj: object) -> None:
        opened = self._opened(file_obj)
        try:
            if opened.writing:
                opened.spool.seek(0)
                await self._blocking(self._objects.put_stream, opened.spool, opened.key)
                await self._notify(opened.key)
        finally:
            opened.spool.close()

    async def _notify(self, key: str) -> None:
        """Hand the stored file to the inbox; a rejection is the client's status message
        (the file has moved to ``rejected/``, its reason beside it)."""
        try:
            report = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._on_upload, key
            )
        except Exception as exc:
            # The file is stored: a failure here is the inbox's to report, not an upload
            # error for the client.
            _LOG.warning("inbox handling failed for %s: %s", key, type(exc).__name__)
            return
        outcomes = report.outcomes if isinstance(report, InboxReport) else []
        for outcome in outcomes:
            if outcome.status == "rejected":
                name = key.rsplit("/", 1)[-1]
                where = (
                    f"; it was moved to /{outcome.moved_to.removeprefix(self._root())} with the "
                    "reason beside it"
                    if outcome.moved_to
                    else ""
                )
                raise asyncssh.SFTPPermissionDenied(f"{name} was rejected: {outcome.reason}{where}")

    async def remove(self, path: bytes) -> None:
        relative = self._relative(path)
        found = await self._lookup(relative)
        if not isinstance(found, InboxObject):
            raise asyncssh.SFTPNoSuchFile("no such file")
        await self._blocking(self._objects.delete, found.key)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=False)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        await self._rename(oldpath, newpath, overwrite=True)

    async def _rename(self, oldpath: bytes, newpath: bytes, *, overwrite: bool) -> None:
        # Clients that upload under a temporary name rename when done: copy, then delete.
        source = await self._lookup(self._relative(oldpath))
        if not isinstance(source, InboxObject):
            raise asyncssh.SFTPNoSuchFile("no such file")
        target_relative = self._relative(newpath)
        if target_relative == "":
            raise asyncssh.SFTPFailure("the inbox is a directory")
        existing = await self._lookup(target_relative)
        if isinstance(existing, asyncssh.SFTPAttrs) or (existing is not None and not overwrite):
            raise asyncssh.SFTPFileAlreadyExists("already exists")
        target = self._key(target_relative)
        await self._blocking(self._objects.copy, source.key, target)
        await self._blocking(self._objects.delete, source.key)
        await self._notify(target)

    # -- what an S3 inbox cannot do

    def open56(self, *args: Any) -> object:
        raise asyncssh.SFTPOpUnsupported("not supported")

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPOpUnsupported("no links in the inbox")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no links in the inbox")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("no links in the inbox")

    def statvfs(self, path: bytes) -> Any:
        raise asyncssh.SFTPOpUnsupported("not supported")

    def fstatvfs(self, file_obj: object) -> Any:
        raise asyncssh.SFTPOpUnsupported("not supported")

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise asyncssh.SFTPOpUnsupported("not supported")

    def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise asyncssh.SFTPOpUnsupported("not supported")

    def fsync(self, file_obj: object) -> None:
        return None


# ------------------------------------------------------------------------ the server


class SftpDropBox:
    """The SFTP server, on its own thread and event loop.

    ``objects`` is the bucket (the local stack's); ``on_upload(key)`` is called, on a
    worker thread, after each file is stored.
    """

    def __init__(
        self, state_dir: Path, objects: InboxObjectsPort, on_upload: Callable[[str], object]
    ) -> None:
        self.state_dir = Path(state_dir)
        self.objects = objects
        self.on_upload = on_upload
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sftp-inbox")

    def _session(self, chan: asyncssh.SSHServerChannel[bytes]) -> _TenantInbox:
        username = str(chan.get_connection().get_extra_info("username") or "")
        entry = _read_users(self.state_dir).get(username) or {}
        tenant = entry.get("tenant")
        return _TenantInbox(
            chan, str(tenant) if tenant else None, self.objects, self.on_upload, self._executor
        )

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); return the port."""
        key = host_key(self.state_dir)
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._acceptor = loop.run_until_complete(
                    asyncssh.create_server(
                        lambda: _Login(self.state_dir, self._connections),
                        host,
                        port,
                        server_host_keys=[key],
                        sftp_factory=self._session,
                        allow_scp=False,
                        # SFTP v3 (OpenSSH's): later versions' open56 is not served here.
                        sftp_version=3,
                        # Only SFTP: no shell, no commands, no forwarding.
                        agent_forwarding=False,
                        x11_forwarding=False,
                    )
                )
                self.port = int(self._acceptor.get_port())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close())
                loop.close()

        self._thread = threading.Thread(target=serve, name="sftp-dropbox", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.port

    async def _close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        for conn in list(self._connections):
            conn.close()
            await conn.wait_closed()

    def stop(self) -> None:
        """Close the listener and every session; wait for the thread."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._executor.shutdown(wait=True)

    @contextmanager
    def running(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
        """``start`` … ``stop`` as a context manager yielding the port."""
        bound = self.start(host, port)
        try:
            yield bound
        finally:
            self.stop()
