--- A private, throwaway MariaDB server: the way to read a `mysqldump` of a dead
-- cloud without installing or touching any real database server.
--
--   local db = require "salvage.db"
--   local conn <close> = assert(db.ephemeral{ dump = "cloud-backup.sql.gz" })
--   local conn = assert(db.ephemeral{ load = { "schema.sql", "seed.sql" }, database = "cloud" })
--
-- `mariadbd` runs with --no-defaults on a fresh datadir in a temporary
-- directory, networking off, a unix socket in that 0700 directory, and without
-- grant tables (so no install step: it is ready in well under a second; the
-- socket's directory is the access control). Dumps load through the `mariadb`
-- client (it understands everything mariadb-dump/mysqldump write: DELIMITER,
-- conditional comments, ...), gzip/xz/bzip2/zstd by content, not by name.
-- The returned connection owns the server: `conn:close()`, its `<close>` or
-- its collection stops the server and removes the directory; a watchdog
-- process does the same when this process dies, kill -9 included.
--
-- Options: dump = FILE | load = {FILE, ...}, database = "cloud", timeout = 30
-- (seconds to wait for the server), mariadbd = PATH ($SALVAGE_MARIADBD),
-- client = PATH ($SALVAGE_MARIADB_CLIENT), tmpdir = DIR ($TMPDIR, /tmp),
-- buffer_pool = "64M".
-- Failures return nil, message, code ("ENOENT" no server binary, "ESERVER"
-- the server did not start, "ELOAD" a file did not load, "ETIMEDOUT").
local db = require "salvage.db"
local sys = require "salvage.sys"

local M = {}

-- connection -> {dir, socket, log, database, server}; weak: it never keeps a connection alive
local servers = setmetatable({}, { __mode = "k" })

local SERVER_PATHS = { "/usr/sbin/mariadbd", "/usr/sbin/mysqld", "/usr/libexec/mariadbd", "/usr/local/sbin/mariadbd",
  "/usr/local/bin/mariadbd", "/usr/bin/mariadbd" }
local CLIENT_PATHS = { "/usr/bin/mariadb", "/usr/bin/mysql", "/usr/local/bin/mariadb" }

local function executable(path)
  local st = path and sys.stat(path)
  return st and st.type == "file" and (st.mode & 0x49) ~= 0
end

local function find(explicit, env, paths, names)
  if explicit then return executable(explicit) and explicit or nil end
  local e = os.getenv(env)
  if e and e ~= "" then return executable(e) and e or nil end
  for _, p in ipairs(paths) do
    if executable(p) then return p end
  end
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    for _, n in ipairs(names) do
      if executable(dir .. "/" .. n) then return dir .. "/" .. n end
    end
  end
end

local function read_file(path, max)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read(max or "a") or ""
  f:close()
  return s
end

local function log_tail(path, lines)
  local all = {}
  for l in read_file(path):gmatch("[^\n]+") do
    if not l:find("%[Note%]") then all[#all + 1] = l end
  end
  return table.concat(all, "\n", math.max(1, #all - (lines or 5) + 1))
end

--- `name` quoted as an SQL identifier.
function M.quote_name(name)
  return "`" .. tostring(name):gsub("`", "``") .. "`"
end

-- The decompressor for a file, from its first bytes.
local function decompressor(path)
  local head = read_file(path, 6)
  if head:sub(1, 2) == "\31\139" then return "gzip -dc"
  elseif head == "\253\55\122\88\90\0" then return "xz -dc"
  elseif head:sub(1, 3) == "BZh" then return "bzip2 -dc"
  elseif head:sub(1, 4) == "\40\181\47\253" then return "zstd -dc"
  end
  return "cat"
end

local LOAD_SCRIPT = [[
f=$1 rc=$2 sock=$3 db=$4 client=$5 unpack=$6
( $unpack -- "$f"; echo $? >"$rc" ) |
  "$client" --no-defaults --socket="$sock" --user=root --database="$db" \
    --default-character-set=utf8mb4 --max-allowed-packet=1G --batch >/dev/null
]]

--- load(conn, files, database) -> true | nil, msg, code
-- Load SQL files (plain or compressed) into `database` (created if missing) of
-- the ephemeral server behind `conn`.
function M.load(conn, files, database)
  local s = servers[conn]
  if not s then return nil, "load: not a connection to an ephemeral server", "EINVAL" end
  if type(files) == "string" then files = { files } end
  database = database or s.database
  local ok, err, code = conn:exec("CREATE DATABASE IF NOT EXISTS " .. M.quote_name(database)
    .. " CHARACTER SET utf8mb4")
  if not ok then return nil, err, code end
  for i, file in ipairs(files) do
    local st = sys.stat(file)
    if not st then return nil, ("load %s: no such file"):format(file), "ENOENT" end
    if st.type ~= "file" then return nil, ("load %s: not a file"):format(file), "EINVAL" end
    local rc, errf = s.dir .. "/load.rc", s.dir .. "/load" .. i .. ".err"
    os.remove(rc)
    os.remove(errf)
    local pid, serr, scode = sys.spawn { "sh", "-c", LOAD_SCRIPT, "sh", file, rc, s.socket, database, s.client,
      decompressor(file), stderr = errf, stdin = "/dev/null" }
    if not pid then return nil, "load: " .. tostring(serr), scode end
    local how, status = sys.wait(pid)
    local unpack_status = tonumber((read_file(rc):gsub("%s", "")))
    if unpack_status ~= 0 then
      return nil, ("load %s: cannot read/decompress it (%s exited %s)"):format(file, decompressor(file),
        tostring(unpack_status)), "ELOAD"
    end
    if how ~= "exited" or status ~= 0 then
      local msg = read_file(errf):gsub("%s+$", "")
      if msg == "" then msg = ("mariadb client %s %s"):format(how, tostring(status)) end
      return nil, ("load %s: %s"):format(file, msg), "ELOAD"
    end
  end
  return true
end

local SYSTEM_TABLES = { "/usr/share/mysql/mysql_system_tables.sql", "/usr/share/mariadb/mysql_system_tables.sql" }

--- system_tables(conn) -> true | nil, msg, code: create the `mysql` system
-- tables (needed by stored routines and events) on an ephemeral server.
function M.system_tables(conn)
  for _, f in ipairs(SYSTEM_TABLES) do
    if sys.stat(f) then return M.load(conn, { f }, "mysql") end
  end
  return nil, "ephemeral: mysql_system_tables.sql not found (mariadb-server)", "ENOENT"
end

local SYSTEM_DBS = { information_schema = true, mysql = true, performance_schema = true, sys = true }

-- A dump made with --databases names its own database: find it when the
-- requested one stayed empty and exactly one other database has tables.
local function pick_database(conn, wanted)
  local tables = assert(conn:query("SELECT TABLE_SCHEMA AS db, COUNT(*) AS n FROM information_schema.TABLES "
    .. "GROUP BY TABLE_SCHEMA"))
  local others = {}
  for _, r in ipairs(tables) do
    if r.db == wanted and r.n > 0 then return wanted end
    if not SYSTEM_DBS[r.db] and r.n > 0 then others[#others + 1] = r.db end
  end
  if #others == 1 then return others[1] end
  return wanted
end

local function stop(srv)
  srv:stop()
end

--- start{dump=|load=, database=, timeout=} -> conn | nil, msg, code  (also `db.ephemeral`)
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("db.ephemeral: options must be a table", 2) end
  local database = opts.database or "cloud"
  local server = find(opts.mariadbd, "SALVAGE_MARIADBD", SERVER_PATHS, { "mariadbd", "mysqld" })
  if not server then
    return nil, "ephemeral: no mariadbd found (install mariadb-server or set SALVAGE_MARIADBD)", "ENOENT"
  end
  local client = find(opts.client, "SALVAGE_MARIADB_CLIENT", CLIENT_PATHS, { "mariadb", "mysql" })
  if not client and (opts.dump or opts.load) then
    return nil, "ephemeral: no mariadb client found (install mariadb-client or set SALVAGE_MARIADB_CLIENT)",
      "ENOENT"
  end
  local files = opts.load or {}
  if type(files) == "string" then files = { files } end
  if opts.dump then files = { opts.dump } end
  for _, f in ipairs(files) do
    if not sys.stat(f) then return nil, ("ephemeral: %s: no such file"):format(f), "ENOENT" end
  end

  local tmp = opts.tmpdir or os.getenv("TMPDIR")
  if not tmp or tmp == "" or #tmp > 60 then tmp = "/tmp" end  -- a unix socket path has ~100 bytes
  local dir, err, code = sys.mkdtemp(tmp .. "/salvage-db.")
  if not dir then return nil, "ephemeral: " .. tostring(err), code end
  local data, sock, logf = dir .. "/data", dir .. "/mysqld.sock", dir .. "/server.log"
  sys.mkdir(data, 448)
  sys.mkdir(dir .. "/tmp", 448)
  local argv = {
    server, "--no-defaults",
    "--datadir=" .. data, "--socket=" .. sock, "--pid-file=" .. dir .. "/mysqld.pid",
    "--tmpdir=" .. dir .. "/tmp", "--log-error=" .. logf,
    "--skip-networking", "--skip-grant-tables", "--skip-name-resolve", "--skip-log-bin",
    "--innodb-buffer-pool-size=" .. (opts.buffer_pool or "64M"), "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", "--sync-binlog=0",
    "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
    "--max-allowed-packet=1G", "--sql-mode=NO_ENGINE_SUBSTITUTION",
    "--secure-file-priv=" .. dir .. "/tmp", "--loose-skip-feedback",
  }
  if sys.getpid and io.open("/proc/self/status") then
    -- mariadbd refuses to run as root unless told to
    local st = read_file("/proc/self/status")
    local uid = st:match("\nUid:%s+(%d+)")
    if uid == "0" then argv[#argv + 1] = "--user=root" end
  end
  local srv, serr, scode = db._server_start(argv, logf, dir)
  if not srv then
    os.execute("rm -rf '" .. dir:gsub("'", "'\\''") .. "'")
    return nil, "ephemeral: " .. tostring(serr), scode
  end
  local deadline = sys.clock() + (opts.timeout or 30)
  local conn, cerr, ccode
  while true do
    local alive, how = srv:alive()
    if not alive then
      local tail = log_tail(logf)
      srv:stop()
      return nil, ("ephemeral: mariadbd %s: %s"):format(how, tail ~= "" and tail or "(no log)"), "ESERVER"
    end
    if sys.stat(sock) then
      conn, cerr, ccode = db.connect { socket = sock, user = "root", connect_timeout = 5 }
      if conn then break end
    end
    if sys.clock() > deadline then
      srv:stop()
      return nil, ("ephemeral: mariadbd not ready after %gs (%s)"):format(opts.timeout or 30,
        tostring(cerr or "no socket")), ccode == nil and "ETIMEDOUT" or "ETIMEDOUT"
    end
    sys.sleep(0.02)
  end
  conn:_own(srv)
  servers[conn] = { dir = dir, socket = sock, log = logf, database = database, server = srv, client = client,
    stop = stop }
  local ok, lerr, lcode = M.load(conn, files, database)
  if not ok and lcode == "ELOAD" and lerr:find("'mysql%.[%w_]+' doesn't exist") then
    -- the dump holds routines or events, which live in the system tables a
    -- fresh datadir lacks: create them (0.2 s) and load everything again
    local sysok
    sysok, lerr, lcode = M.system_tables(conn)
    if sysok then
      assert(conn:exec("FLUSH TABLES"))
      assert(conn:exec("DROP DATABASE IF EXISTS " .. M.quote_name(database)))
      ok, lerr, lcode = M.load(conn, files, database)
    end
  end
  if not ok then
    conn:close()
    return nil, "ephemeral: " .. lerr, lcode
  end
  local use = pick_database(conn, database)
  servers[conn].database = use
  ok, lerr, lcode = conn:exec("USE " .. M.quote_name(use))
  if not ok then
    conn:close()
    return nil, "ephemeral: " .. lerr, lcode
  end
  return conn
end

--- Details of the server behind an ephemeral connection: {dir, socket, log, database} or nil.
function M.info(conn)
  local s = servers[conn]
  if not s then return nil end
  return { dir = s.dir, socket = s.socket, log = s.log, database = s.database, pid = s.server:pid() }
end

--- Another connection to the same server (it does not own the server).
function M.connect(conn, database)
  local s = servers[conn]
  if not s then return nil, "connect: not a connection to an ephemeral server", "EINVAL" end
  return db.connect { socket = s.socket, user = "root", database = database or s.database }
end

return M
