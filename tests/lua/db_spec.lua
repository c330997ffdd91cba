-- salvage.db against a real, private MariaDB server (started here, stopped in teardown).
local db = require "salvage.db"
local ephemeral = require "salvage.db.ephemeral"
local sys = require "salvage.sys"

describe("salvage.db", function()
  local conn
  setup(function()
    conn = assert(db.ephemeral { timeout = 30 })
    assert(conn:exec("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, s TEXT, b BLOB, n BIGINT, "
      .. "u BIGINT UNSIGNED, f DOUBLE, d DECIMAL(20,4), dt DATETIME, ts TIMESTAMP NULL, da DATE, bit8 BIT(8), "
      .. "ti TINYINT(1), y YEAR, lt LONGTEXT) CHARACTER SET utf8mb4"))
  end)
  teardown(function() if conn then conn:close() end end)

  it("round-trips every parameter type through ? placeholders", function()
    local n, id = assert(conn:exec("INSERT INTO t (s, b, n, u, f, d, dt, ts, da, bit8, ti, y) "
      .. "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, b'10100101', ?, ?)",
      "x'y\"z\\w\n😀", "a\0b", math.mininteger, "18446744073709551615", 1.5, "12345678.9012",
      "2015-11-17 12:45:01", nil, "2015-11-17", true, 2015))
    assert.equal(1, n)
    assert.equal("integer", math.type(id))
    local rows = assert(conn:query("SELECT * FROM t WHERE id = ?", id))
    assert.equal(1, #rows)
    local r = rows[1]
    assert.equal("x'y\"z\\w\n😀", r.s)
    assert.equal("a\0b", r.b)
    assert.equal(math.mininteger, r.n)
    assert.equal("integer", math.type(r.n))
    assert.equal("18446744073709551615", r.u)
    assert.equal(1.5, r.f)
    assert.equal("12345678.9012", r.d)
    assert.equal("2015-11-17 12:45:01", r.dt)
    assert.is_nil(r.ts)
    assert.equal("2015-11-17", r.da)
    assert.equal(0xA5, r.bit8)
    assert.equal(1, r.ti)
    assert.equal(2015, r.y)
  end)

  it("keeps BIGINT UNSIGNED up to 2^63-1 as integers", function()
    local r = assert(conn:query("SELECT CAST(9223372036854775807 AS UNSIGNED) AS a, "
      .. "CAST(9223372036854775808 AS UNSIGNED) AS b"))[1]
    assert.equal(math.maxinteger, r.a)
    assert.equal("9223372036854775808", r.b)
  end)

  it("types a selected parameter by what was sent", function()
    local r = assert(conn:query("SELECT ? AS a, ? AS b, ? AS c", 42, "42", 4.5))[1]
    assert.equal(42, r.a)
    assert.equal("42", r.b)
    assert.equal(4.5, r.c)
    r = assert(conn:query("SELECT ? AS a, ? AS b, ? AS c", "s", 7, nil))[1]
    assert.equal("s", r.a)
    assert.equal(7, r.b)
    assert.is_nil(r.c)
  end)

  it("fetches values longer than the first buffer", function()
    local big = string.rep("0123456789", 100000)
    local _, id = assert(conn:exec("INSERT INTO t (lt) VALUES (?)", big))
    local r = assert(conn:query("SELECT lt, id FROM t WHERE id = ?", id))[1]
    assert.equal(#big, #r.lt)
    assert.equal(big, r.lt)
  end)

  it("refuses duplicated column names instead of overwriting", function()
    local rows, err, code = conn:query("SELECT 1 AS volpath, 2 AS volpath")
    assert.is_nil(rows)
    assert.equal("EDUPCOLUMN", code)
    assert.matches("volpath", err)
  end)

  it("returns nil, message, code and errno/sqlstate on SQL errors", function()
    local rows, err, code, info = conn:query("SELECT * FROM no_such_table")
    assert.is_nil(rows)
    assert.equal("ER_NO_SUCH_TABLE", code)
    assert.matches("no_such_table", err)
    assert.equal(1146, info.errno)
    assert.equal("42S02", info.sqlstate)
    local _, _, pcode = conn:exec("SELEKT 1")
    assert.equal("ER_PARSE_ERROR", pcode)
  end)

  it("raises on misuse: wrong parameter count or type, closed handle", function()
    assert.has_error(function() conn:query("SELECT ? AS a") end)
    assert.has_error(function() conn:query("SELECT ? AS a", 1, 2) end)
    assert.has_error(function() conn:query("SELECT ? AS a", {}) end)
  end)

  it("streams rows, and a break frees the result", function()
    for i = 1, 50 do assert(conn:exec("INSERT INTO t (n) VALUES (?)", i)) end
    local seen = 0
    for r in conn:rows("SELECT n FROM t WHERE n BETWEEN 1 AND 50 ORDER BY n") do
      seen = seen + 1
      assert.equal(seen, r.n)
    end
    assert.equal(50, seen)
    local first
    for r in conn:rows("SELECT n FROM t WHERE n BETWEEN 1 AND 50 ORDER BY n") do
      first = first or r.n
      if first then break end
    end
    assert.equal(1, first)
    -- the connection is usable at once
    assert.equal(50, assert(conn:query("SELECT COUNT(*) AS c FROM t WHERE n BETWEEN 1 AND 50"))[1].c)
  end)

  it("refuses to continue a cursor after another statement ran", function()
    local it, st = conn:rows("SELECT n FROM t WHERE n BETWEEN 1 AND 50 ORDER BY n")
    assert.equal(1, it(st).n)
    assert(conn:query("SELECT 1 AS one"))
    assert.has_error(function() it(st) end)
  end)

  it("caches prepared statements per connection", function()
    for i = 1, 300 do
      assert.equal(i, assert(conn:query("SELECT ? + 0 AS v", i))[1].v)
    end
    -- more distinct statements than the cache holds
    for i = 1, 300 do
      assert.equal(i, assert(conn:query("SELECT " .. i .. " AS v"))[1].v)
    end
  end)

  it("commits a transaction, and rolls back and re-raises on error", function()
    assert(conn:exec("CREATE TABLE tx (v INT) ENGINE=InnoDB"))
    assert.equal(7, conn:transaction(function(c)
      assert(c:exec("INSERT INTO tx VALUES (1)"))
      return 7
    end))
    local ok, err = pcall(conn.transaction, conn, function(c)
      assert(c:exec("INSERT INTO tx VALUES (2)"))
      error("boom")
    end)
    assert.is_false(ok)
    assert.matches("boom", err)
    assert.same({ { v = 1 } }, assert(conn:query("SELECT v FROM tx")))
  end)

  it("rejects an unknown connect option instead of ignoring it", function()
    local ok, err = pcall(db.connect, { socket = "/nonexistent/mysqld.sock", pasword = "x" })
    assert.is_false(ok)
    assert.matches("connect: unknown option 'pasword' %(known: url, host, port, user, password,", err)
    ok, err = pcall(db.connect, { socket = "/nonexistent/mysqld.sock", tls = { verfy = true } })
    assert.is_false(ok)
    assert.matches("connect: tls: unknown option 'verfy'", err)
    ok, err = pcall(db.connect, { socket = "/nonexistent/mysqld.sock", port = "3306" })
    assert.is_false(ok)
    assert.matches("option 'port' must be an integer, got string", err)
  end)

  it("reports an unreachable server with a clear error", function()
    local c, err, code = db.connect { socket = "/nonexistent/mysqld.sock", connect_timeout = 2 }
    assert.is_nil(c)
    assert.equal("CR_CONNECTION_ERROR", code)
    assert.matches("/nonexistent/mysqld.sock", err)
    c, err, code = db.connect("mariadb://root@127.0.0.1:1/cloud?connect_timeout=2")
    assert.is_nil(c)
    assert.matches("^CR_", code)
    assert.matches("127.0.0.1:1", err)
  end)

  it("connects by URL, with the password from $SALVAGE_DB_PASSWORD", function()
    local info = ephemeral.info(conn)
    sys.setenv("SALVAGE_DB_PASSWORD", "from-env")
    local c, err = db.connect("mariadb://root@localhost/mysql_nope?socket=" .. info.socket)
    sys.setenv("SALVAGE_DB_PASSWORD", nil)
    -- skip-grant-tables accepts any password; the database name proves the URL was read
    assert.is_nil(c)
    assert.matches("mysql_nope", err)
    c = assert(db.connect("mariadb://root@localhost?socket=" .. info.socket))
    assert.equal(1, assert(c:query("SELECT 1 AS one"))[1].one)
    c:close()
  end)

  it("reads an option file", function()
    local info = ephemeral.info(conn)
    local f = assert(io.open(info.dir .. "/my.cnf", "w"))
    f:write("[client]\nuser=root\nsocket=" .. info.socket .. "\n")
    f:close()
    local c = assert(db.connect { option_file = info.dir .. "/my.cnf" })
    assert.equal(1, assert(c:query("SELECT 1 AS one"))[1].one)
    c:close()
  end)

  it("parses URLs and rejects bad ones", function()
    assert.same({ user = "us er", password = "p@ss:w", host = "db1", port = 3307, database = "cloud",
      socket = "/run/s", connect_timeout = 5 },
      db.parse_url("mariadb://us%20er:p%40ss:w@db1:3307/cloud?socket=/run/s&connect_timeout=5"))
    assert.same({ host = "::1", port = 3306 }, db.parse_url("mariadb://[::1]:3306"))
    for _, bad in ipairs { "http://x/", "mariadb://h:0/", "mariadb://h:70000/", "mariadb://h:12a/",
      "mariadb://h/db?password=x", "mariadb://h/db?nope=1", "mariadb://u%zz@h/", "mariadb://[::1/" } do
      local t, err, code = db.parse_url(bad)
      assert.is_nil(t, bad)
      assert.equal("EINVAL", code)
      assert.is_string(err)
    end
  end)

  it("closes idempotently, and says so", function()
    local c = assert(ephemeral.connect(conn))
    assert.matches("salvage.db.conn %(", tostring(c))
    c:close()
    c:close()
    assert.equal("salvage.db.conn (closed)", tostring(c))
    assert.has_error(function() c:query("SELECT 1") end)
    do
      local c2 <close> = assert(ephemeral.connect(conn))
      assert(c2:ping())
    end
  end)
end)

describe("db.ephemeral", function()
  it("stops the server and removes its directory on close", function()
    local c = assert(db.ephemeral {})
    local info = ephemeral.info(c)
    assert.truthy(sys.stat(info.socket))
    assert.is_true(sys.kill(info.pid, 0))
    c:close()
    assert.is_nil(sys.stat(info.dir))
    assert.is_nil(sys.kill(info.pid, 0))
  end)

  it("is stopped by its watchdog when the owning process is killed", function()
    local dir = sys.mkdtemp("/tmp/salvage-dbtest.")
    local script = dir .. "/owner.lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local db = require "salvage.db"
      local c = assert(db.ephemeral {})
      local i = require("salvage.db.ephemeral").info(c)
      io.stdout:write(i.pid, " ", i.dir, "\n")
      io.stdout:flush()
      require("salvage.sys").sleep(60)
    ]])
    f:close()
    local pid = sys.spawn { SALVAGE, script, stdout = dir .. "/out" }
    local line
    for _ = 1, 500 do
      local o = io.open(dir .. "/out")
      line = o and o:read("l")
      if o then o:close() end
      if line then break end
      sys.sleep(0.02)
    end
    assert.truthy(line, "the owner never reported its server")
    local spid, sdir = line:match("^(%d+) (.+)$")
    assert.is_true(sys.kill(tonumber(spid), 0))
    sys.kill(pid, 9)
    sys.wait(pid)
    local gone = false
    for _ = 1, 250 do
      if not sys.kill(tonumber(spid), 0) and not sys.stat(sdir) then
        gone = true
        break
      end
      sys.sleep(0.02)
    end
    os.execute("rm -rf '" .. dir .. "'")
    assert.is_true(gone, "server or its directory survived its owner")
  end)

  it("fails clearly on a missing or bad dump", function()
    local c, err, code = db.ephemeral { dump = "/nonexistent/dump.sql" }
    assert.is_nil(c)
    assert.equal("ENOENT", code)
    assert.matches("nonexistent", err)
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "w"))
    f:write("CREATE TABLE x (a INT);\nTHIS IS NOT SQL;\n")
    f:close()
    c, err, code = db.ephemeral { dump = tmp }
    os.remove(tmp)
    assert.is_nil(c)
    assert.equal("ELOAD", code)
    assert.matches("ERROR 1064", err)
  end)

  it("fails clearly when mariadbd cannot run", function()
    local c, err, code = db.ephemeral { mariadbd = "/nonexistent/mariadbd" }
    assert.is_nil(c)
    assert.equal("ENOENT", code)
    assert.matches("mariadbd", err)
    c, err, code = db.ephemeral { mariadbd = "/bin/false" }
    assert.is_nil(c)
    assert.equal("ESERVER", code)
    assert.matches("exited", err)
  end)
end)

describe("salvage.db statements with odd results", function()
  local conn
  setup(function() conn = assert(db.ephemeral {}) end)
  teardown(function() if conn then conn:close() end end)

  it("exec of statements that return rows leaves the connection usable", function()
    assert(conn:exec("CREATE TABLE o (a INT)"))
    assert(conn:exec("INSERT INTO o VALUES (1), (2), (3)"))
    for _, q in ipairs { "SELECT * FROM o", "SHOW WARNINGS", "SHOW ENGINE INNODB STATUS", "SET NAMES utf8mb4",
      "LOCK TABLES o WRITE", "UNLOCK TABLES" } do
      assert(conn:exec(q))
      assert.equal(3, assert(conn:query("SELECT COUNT(*) AS n FROM o"))[1].n, q)
    end
  end)
end)

describe("db.ephemeral with routines in the dump", function()
  it("creates the system tables when the dump needs them", function()
    local src <close> = assert(db.ephemeral {})
    assert(ephemeral.system_tables(src))
    assert(src:exec("USE cloud"))
    assert(src:exec("CREATE TABLE r (a INT)"))
    assert(src:exec("CREATE DEFINER = 'cloud'@'localhost' PROCEDURE IDEMPOTENT_ADD_COLUMN(IN t VARCHAR(64)) "
      .. "BEGIN SELECT t; END"))
    local info = ephemeral.info(src)
    local dump = info.dir .. "/routines.sql"
    assert(os.execute(("mariadb-dump --no-defaults --socket='%s' --user=root --routines cloud > '%s'")
      :format(info.socket, dump)))
    local c <close> = assert(db.ephemeral { dump = dump })
    local r = assert(c:query("SELECT ROUTINE_NAME AS n FROM information_schema.ROUTINES "
      .. "WHERE ROUTINE_SCHEMA = 'cloud'"))
    assert.same({ { n = "IDEMPOTENT_ADD_COLUMN" } }, r)
    assert.same({}, assert(c:query("SELECT * FROM r")))
  end)
end)
