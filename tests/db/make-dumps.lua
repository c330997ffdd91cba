-- Make real mariadb-dump outputs of the sample estate (+ edge cases) for the
-- --dump tests: salvage tests/db/make-dumps.lua OUTDIR VERSION
--   OUTDIR/plain.sql       mariadb-dump of database `cloud` (no CREATE DATABASE)
--   OUTDIR/named.sql.gz    mariadb-dump --databases cloud_old, gzipped (names its own database)
local db = require "salvage.db"
local ephemeral = require "salvage.db.ephemeral"
local out, version = arg[1], arg[2] or "4.5.2"
TOP = TOP or os.getenv("TOP")
dofile(TOP .. "/tests/lua/helper.lua")
local estate = dofile(TOP .. "/tests/db/estate.lua")
local conn <close> = assert(db.ephemeral {})
local info = ephemeral.info(conn)
local files = { estate.shared("schema-" .. version .. ".sql"), estate.seed_file(conn, version),
  estate.edge_file(conn, version) }
assert(ephemeral.load(conn, files, "cloud"))
assert(ephemeral.load(conn, files, "cloud_old"))
local base = ("mariadb-dump --no-defaults --socket='%s' --user=root --skip-dump-date"):format(info.socket)
assert(os.execute(base .. " cloud > '" .. out .. "/plain.sql'"))
assert(os.execute(base .. " --databases cloud_old | gzip -9 > '" .. out .. "/named.sql.gz'"))
