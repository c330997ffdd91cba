--- salvage.cloudstack.api: a client of the CloudStack HTTP API.
--
--   local api = require "salvage.cloudstack.api"
--   local c = api.new{url = "http://mgmt:8080/client/api", apikey = K, secretkey = S}
--   local zones = c:list("listZones")                       -- follows pages
--   local dom, err = c:call("createDomain", {name = "SPDM Inc"})
--   local res = c:async("deployVirtualMachine", {...})      -- res.virtualmachine
--   local tpl = c:upload_template("/srv/root.vhd", {name =, zoneid =, ostypeid =}, {progress = fn})
--
-- Every request is signed with version 3 and `expires`; commands other than
-- list*/query* go by POST (servers with enforce.post.requests.and.timestamps
-- refuse them by GET). Failures return nil, err where err is a table
-- {errorcode, cserrorcode, errortext, http_status, message, code, command}
-- whose tostring is `message`. Secrets never appear in err or in logs.
local crypto = require "salvage.crypto"
local http = require "salvage.http"
local json = require "salvage.json"
local log = require "salvage.log"
local sys = require "salvage.sys"

local M = {}

M.MAX_PAGE_SIZE = 500

--- Commands answered by an async job id (the README's table plus neighbours).
M.ASYNC = {
  deployVirtualMachine = true, attachVolume = true, detachVolume = true, startVirtualMachine = true,
  stopVirtualMachine = true, rebootVirtualMachine = true, destroyVirtualMachine = true, uploadVolume = true,
  deleteDomain = true, deleteAccount = true, createVolume = true, createSnapshot = true,
  extractTemplate = true, extractVolume = true, migrateVirtualMachine = true, resizeVolume = true,
  expungeVirtualMachine = true, copyTemplate = true, deleteTemplate = true, deleteSnapshot = true,
  createTemplate = true, deleteNetwork = true,
}

--- Idempotent commands: safe to send by GET and to retry.
function M.is_idempotent(command)
  return command:match("^list") ~= nil or command:match("^query") ~= nil
end

local ERR_MT = { __tostring = function(e) return e.message end }

local function api_error(fields)
  local e = setmetatable(fields, ERR_MT)
  if not e.message then
    local parts = { e.command or "api" }
    parts[#parts + 1] = ": " .. tostring(e.errortext or "error")
    if e.errorcode then
      parts[#parts + 1] = (" (errorcode %s%s)"):format(e.errorcode,
        e.cserrorcode and (", cserrorcode " .. e.cserrorcode) or "")
    elseif e.http_status then
      parts[#parts + 1] = (" (HTTP %s)"):format(e.http_status)
    end
    e.message = log.scrub(table.concat(parts))
  end
  e.errortext = e.errortext and log.scrub(e.errortext)
  return e
end
M.error = api_error

local function is_array(t)
  return type(t) == "table" and (t[1] ~= nil or next(t) == nil)
end

local function scalar(v)
  local tv = type(v)
  if tv == "boolean" then return v and "true" or "false" end
  if tv == "number" then
    if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then
      return ("%d"):format(math.tointeger(v))
    end
    return tostring(v)
  end
  if tv == "string" then return v end
  error(("salvage.cloudstack.api: cannot send a %s as a parameter value"):format(tv), 3)
end

--- Flatten caller parameters: names lower-cased (the server matches them
-- case-insensitively; lower-case names make every sort agree), arrays of
-- scalars joined with commas, and maps (`details = {{cpuNumber = 2}}` or
-- `details = {cpuNumber = 2}`) as `details[0].cpuNumber=2`.
function M.flatten(params)
  local out = {}
  for k, v in pairs(params or {}) do
    if type(k) ~= "string" then error("salvage.cloudstack.api: parameter names must be strings", 2) end
    -- map entries given flat (`details[0].cpuNumber`) keep the case of their key
    local name = k:gsub("^[^%[]+", string.lower)
    if type(v) == "table" then
      if is_array(v) and type(v[1]) ~= "table" then
        local parts = {}
        for i, x in ipairs(v) do parts[i] = scalar(x) end
        out[name] = table.concat(parts, ",")
      else
        local list = is_array(v) and v or { v }
        for i, m in ipairs(list) do
          for mk, mv in pairs(m) do
            out[("%s[%d].%s"):format(name, i - 1, mk)] = scalar(mv)
          end
        end
      end
    elseif v ~= nil then
      out[name] = scalar(v)
    end
  end
  return out
end

--- The query string of `params` the way the server rebuilds it to verify a
-- signature: names sorted, values Java-URL-encoded, joined with '&'.
local function canonical(params)
  local names = {}
  for k in pairs(params) do
    if k:lower() ~= "signature" then names[#names + 1] = k end
  end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = k .. "=" .. crypto.urlencode(params[k]) end
  return table.concat(parts, "&")
end

--- Signature of already flattened string parameters:
-- Base64(HMAC-SHA1(secret, lower(canonical query))).
function M.sign(params, secretkey)
  assert(type(secretkey) == "string", "salvage.cloudstack.api.sign: secretkey must be a string")
  local flat = {}
  for k, v in pairs(params) do flat[k] = scalar(v) end
  return crypto.base64(crypto.hmac_sha1(secretkey, canonical(flat):lower(), "raw"))
end

local function expires_at(seconds)
  return os.date("!%Y-%m-%dT%H:%M:%S+0000", os.time() + seconds)
end

local function form_encode(params)
  local names = {}
  for k in pairs(params) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for i, k in ipairs(names) do parts[i] = crypto.urlencode(k) .. "=" .. crypto.urlencode(params[k]) end
  return table.concat(parts, "&")
end

local Client = {}
Client.__index = Client
Client.__name = "salvage.cloudstack.api"

function Client:__tostring()
  return ("salvage.cloudstack.api client (%s)"):format(self.url)
end

--- api.new{url, apikey, secretkey, timeout = 60, verify_tls = true, cafile,
--   poll_interval = 2, job_timeout = 3600, retries = 4, expires = 600}
function M.new(opts)
  assert(type(opts) == "table", "salvage.cloudstack.api.new: options table expected")
  for _, k in ipairs { "url", "apikey", "secretkey" } do
    if type(opts[k]) ~= "string" or opts[k] == "" then
      error(("salvage.cloudstack.api.new: '%s' is required"):format(k), 2)
    end
  end
  local self = setmetatable({
    url = opts.url,
    timeout = opts.timeout or 60,
    connect_timeout = opts.connect_timeout or 20,
    verify_tls = opts.verify_tls ~= false,
    cafile = opts.cafile,
    poll_interval = opts.poll_interval or 2,
    max_poll_interval = opts.max_poll_interval or 10,
    job_timeout = opts.job_timeout or 3600,
    retries = opts.retries or 4,
    retry_delay = opts.retry_delay or 0.5,
    expires = opts.expires or 600,
    http = http.client(),
    calls = 0,
  }, Client)
  -- keep the credentials out of pairs()/json dumps of the client
  local secret = { apikey = opts.apikey, secretkey = opts.secretkey }
  self.credentials = function() return secret.apikey, secret.secretkey end
  return self
end

function Client:close()
  if self.http then self.http:close() end
end
Client.__close = Client.close

--- What a non-API answer says, in one line: an HTML error page (a proxy's, a
-- servlet container's) by its status and title, anything else by its first bytes.
function M.summarize_body(res)
  local body = res.body or ""
  local ctype = tostring(res.headers and res.headers["content-type"] or "")
  if ctype:lower():find("html", 1, true) or body:match("^%s*<") then
    local title = body:match("<[Tt][Ii][Tt][Ll][Ee][^>]*>(.-)</[Tt][Ii][Tt][Ll][Ee]>")
      or body:match("<[Hh]1[^>]*>(.-)</[Hh]1>")
    title = title and title:gsub("<[^>]*>", ""):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
    return ("HTTP %s, HTML page%s"):format(tostring(res.status), title and title ~= "" and (": " .. title) or "")
  end
  local text = body:sub(1, 120):gsub("%s+", " "):gsub(" $", "")
  return ("HTTP %s, %s answer (%s)"):format(tostring(res.status), ctype ~= "" and ctype or "untyped", text)
end

local function decode_body(command, res)
  local body = res.body or ""
  local doc = body ~= "" and json.decode(body) or nil
  if type(doc) ~= "table" then
    return nil, api_error {
      command = command, http_status = res.status, code = "EPROTO",
      errortext = "unexpected answer: " .. M.summarize_body(res),
    }
  end
  -- the envelope has one key: <command>response, postupload*response or errorresponse
  local key, inner = next(doc)
  if next(doc, key) ~= nil or type(inner) ~= "table" then
    return nil, api_error { command = command, http_status = res.status, code = "EPROTO",
      errortext = "unexpected envelope" }
  end
  if res.status ~= 200 or inner.errorcode then
    return nil, api_error {
      command = command, http_status = res.status, code = "EAPI",
      errorcode = inner.errorcode or res.status, cserrorcode = inner.cserrorcode,
      errortext = inner.errortext or ("HTTP " .. res.status),
    }
  end
  return inner
end

-- Is this failure worth another try for an idempotent command?
local function transient(err)
  if err.code == "ECONNREFUSED" or err.code == "ECONNRESET" or err.code == "ETIMEDOUT"
      or err.code == "EHTTP" then
    return true
  end
  local s = err.http_status
  -- 5xx without a CloudStack error body (proxy, restart) and 429 rate limits;
  -- 530-535 with an errorcode are the server's own verdicts
  if s == 429 then return true end
  -- a truncated or malformed answer (EPROTO with 200): the request may be asked again
  if err.code == "EPROTO" and (s == nil or s == 200) then return true end
  return s and s >= 500 and s < 600 and err.code == "EPROTO"
end

--- One signed request; returns the decoded inner object or nil, err.
-- opts: {method = "GET"|"POST" (default by command), retries = n, timeout = s}
function Client:call(command, params, opts)
  assert(type(command) == "string" and command ~= "", "salvage.cloudstack.api: command name expected")
  opts = opts or {}
  local flat = M.flatten(params)
  local idempotent = M.is_idempotent(command)
  local method = opts.method or (idempotent and "GET" or "POST")
  local retries = idempotent and (opts.retries or self.retries) or 0
  local apikey, secretkey = self.credentials()
  local delay = self.retry_delay
  local attempt = 0
  while true do
    attempt = attempt + 1
    local p = {}
    for k, v in pairs(flat) do p[k] = v end
    p.command = command
    p.response = "json"
    p.apikey = apikey
    p.signatureversion = "3"
    p.expires = expires_at(self.expires)
    p.signature = M.sign(p, secretkey)
    -- A state-changing request goes on a fresh connection that is not reused:
    -- libcurl never re-sends it on a dead kept-alive one (the server may have
    -- executed the first copy). A lost reply is reconciled by the caller.
    local req = {
      method = method, timeout = opts.timeout or self.timeout, connect_timeout = self.connect_timeout,
      verify_tls = self.verify_tls, cafile = self.cafile, fresh = not idempotent or nil,
    }
    if method == "GET" then
      req.url = self.url .. "?" .. form_encode(p)
    else
      req.url = self.url
      req.body = form_encode(p)
      req.headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
    end
    self.calls = self.calls + 1
    if log.enabled("debug") then
      -- the whole request as a URL, signature and keys masked: what to paste into curl to compare
      local url = req.url .. (req.body and ("?" .. req.body) or "")
      log.debug("api request", { command = command, method = method, attempt = attempt, url = log.scrub(url) })
    end
    local res, msg, code = self.http:request(req)
    local inner, err
    if not res then
      err = api_error { command = command, code = code, errortext = msg }
    else
      inner, err = decode_body(command, res)
      if inner then return inner end
    end
    if attempt > retries or not transient(err) then
      log.debug("api error", { command = command, errortext = err.errortext, http_status = err.http_status })
      return nil, err
    end
    log.warn(("%s failed (%s), retrying in %.1fs"):format(command, err.errortext, delay),
      { command = command, attempt = attempt })
    sys.sleep(delay)
    delay = math.min(delay * 2, 10)
  end
end

--- The array of a list answer ({} -> empty), and its count.
local function rows_of(inner)
  for k, v in pairs(inner) do
    if k ~= "count" and type(v) == "table" then return v, inner.count end
  end
  return {}, inner.count or 0
end

--- All rows of a list command, following pages of `pagesize` (500).
function Client:list(command, params, opts)
  local p = {}
  for k, v in pairs(params or {}) do p[k:lower()] = v end
  local pagesize = p.pagesize or M.MAX_PAGE_SIZE
  p.pagesize = pagesize
  local out = json.array {}
  local page = p.page or 1
  while true do
    p.page = page
    local inner, err = self:call(command, p, opts)
    if not inner then return nil, err end
    local rows, count = rows_of(inner)
    for _, r in ipairs(rows) do out[#out + 1] = r end
    if #rows == 0 or not count or #out >= count or #rows < pagesize then break end
    page = page + 1
  end
  return out
end

--- The one row of a list whose fields equal `match` exactly (servers filter
-- some names with LIKE '%x%': never trust a list filter to be exact).
-- find_one("listOsTypes", {description = d}, {description = d}) -> row | nil, err (ENOENT, EAMBIGUOUS)
function Client:find_one(command, params, match)
  local rows, err = self:list(command, params)
  if not rows then return nil, err end
  local found = {}
  for _, r in ipairs(rows) do
    local ok = true
    for k, v in pairs(match or {}) do
      if r[k] ~= v then ok = false break end
    end
    if ok then found[#found + 1] = r end
  end
  local what = {}
  for k, v in pairs(match or {}) do what[#what + 1] = ("%s=%s"):format(k, tostring(v)) end
  table.sort(what)
  if #found == 0 then
    return nil, api_error { command = command, code = "ENOENT",
      errortext = ("no row with %s"):format(table.concat(what, ", ")) }
  elseif #found > 1 then
    return nil, api_error { command = command, code = "EAMBIGUOUS",
      errortext = ("%d rows with %s"):format(#found, table.concat(what, ", ")) }
  end
  return found[1]
end

--- Wait for an async job; returns jobresult or nil, err (the job's error).
function Client:wait_job(jobid, command, opts)
  opts = opts or {}
  local deadline = sys.clock() + (opts.job_timeout or self.job_timeout)
  local interval = opts.poll_interval or self.poll_interval
  while true do
    local job, err = self:call("queryAsyncJobResult", { jobid = jobid })
    if not job then
      err.jobid = jobid
      return nil, err
    end
    if job.jobstatus == 1 then
      return job.jobresult or {}, job
    elseif job.jobstatus == 2 then
      local r = job.jobresult or {}
      return nil, api_error {
        command = command, jobid = jobid, code = "EJOB", errorcode = r.errorcode or job.jobresultcode,
        cserrorcode = r.cserrorcode, errortext = r.errortext or "async job failed", http_status = 200,
      }
    end
    if sys.clock() + interval > deadline then
      return nil, api_error {
        command = command, jobid = jobid, code = "ETIMEDOUT",
        errortext = ("async job %s still pending after %gs"):format(jobid, opts.job_timeout or self.job_timeout),
      }
    end
    sys.sleep(interval)
    interval = math.min(interval * 1.5, opts.max_poll_interval or self.max_poll_interval)
  end
end

--- Submit an async command and wait for its job: the jobresult
-- (`virtualmachine` for deployVirtualMachine, `volume` for attachVolume, ...).
function Client:async(command, params, opts)
  local submit, err = self:call(command, params, opts)
  if not submit then return nil, err end
  if not submit.jobid then
    return nil, api_error { command = command, code = "EPROTO", errortext = "no jobid in the answer" }
  end
  local res, jerr = self:wait_job(submit.jobid, command, opts)
  if not res then
    jerr.id = submit.id
    return nil, jerr
  end
  return res, submit.jobid
end

local function basename(path) return (path:match("([^/]+)$") or path) end

-- POST the body (a file path, or a salvage.stream sent once from C) to the upload URL;
-- nil, err on anything but 200. A stream goes on a fresh connection: a POST upload URL is
-- single-use, so the transport must never re-send it on a kept-alive connection.
function Client:post_upload(command, body, up, opts)
  local stream = type(body) ~= "string"
  -- the server checks the file name's extension against the format (.vhd, .qcow2)
  local ext = "." .. (opts.format or "VHD"):lower()
  local filename = stream and (opts.filename or ("disk" .. ext)) or basename(body)
  if filename:lower():sub(-#ext) ~= ext then filename = filename .. ext end
  local progress
  if opts.progress then
    local cb = opts.progress
    progress = function(_, _, ultotal, ulnow) return cb(ulnow, ultotal) end
  end
  local part = { name = "file", filename = filename, type = "application/octet-stream" }
  if stream then part.stream = body else part.file = body end
  local res, msg, code = self.http:request {
    method = "POST", url = up.postURL, fresh = stream,
    headers = { ["X-signature"] = up.signature, ["X-metadata"] = up.metadata, ["X-expires"] = up.expires },
    form = { part },
    connect_timeout = self.connect_timeout, timeout = opts.timeout, stall_timeout = opts.stall_timeout or 300,
    upload_buffer = opts.upload_buffer,
    verify_tls = self.verify_tls, cafile = self.cafile, progress = progress,
  }
  if not res then
    return nil, api_error { command = command, code = code, errortext = msg, id = up.id }
  end
  if res.status ~= 200 then
    return nil, api_error { command = command, code = "EUPLOAD", http_status = res.status, id = up.id,
      errortext = "upload refused: " .. M.summarize_body(res) }
  end
  return res
end

-- Poll fn() -> done(obj) | nil(pending) | false, errtext until done or timeout.
function Client:poll_until(command, what, fn, opts)
  local deadline = sys.clock() + (opts.job_timeout or self.job_timeout)
  local interval = opts.poll_interval or self.poll_interval
  while true do
    local obj, err = fn()
    if obj then return obj end
    if err then return nil, err end
    if sys.clock() + interval > deadline then
      return nil, api_error { command = command, code = "ETIMEDOUT",
        errortext = ("%s not ready after %gs"):format(what, opts.job_timeout or self.job_timeout) }
    end
    sys.sleep(interval)
    interval = math.min(interval * 1.5, opts.max_poll_interval or self.max_poll_interval)
  end
end

local function owner_params(src, dst)
  dst.account = src.account
  dst.domainid = src.domainid
  return dst
end

local TEMPLATE_FAILED = { UploadError = true, UploadAbandoned = true, Inactive = true }

--- Wait until a template is ready; nil, err carrying the server's status text.
function Client:wait_template(id, params, opts, command)
  params, opts = params or {}, opts or {}
  return self:poll_until(command or "listTemplates", "template " .. id, function()
    local rows, err = self:list("listTemplates", owner_params(params, { templatefilter = "all", id = id }))
    if not rows then return nil, err end
    local t = rows[1]
    if not t then
      return nil, api_error { command = command, code = "ENOENT", errortext = "template " .. id .. " vanished" }
    end
    if t.isready then return t end
    local st = tostring(t.status or "")
    if TEMPLATE_FAILED[t.state] or st:lower():match("error") or st:lower():match("fail")
        or st:lower():match("abandon") then
      return nil, api_error { command = command, code = "EUPLOAD", id = id,
        errortext = ("template %s: %s"):format(t.state or "failed", st) }
    end
  end, opts)
end

--- Wait until a volume is Uploaded (or Ready).
function Client:wait_volume(id, params, opts, command)
  params, opts = params or {}, opts or {}
  return self:poll_until(command or "listVolumes", "volume " .. id, function()
    local rows, err = self:list("listVolumes", owner_params(params, { id = id, listall = true }))
    if not rows then return nil, err end
    local v = rows[1]
    if not v then
      return nil, api_error { command = command, code = "ENOENT", errortext = "volume " .. id .. " vanished" }
    end
    if v.state == "Uploaded" or v.state == "Ready" then return v end
    if v.state == "UploadError" or v.state == "UploadAbandoned" or v.state == "Error" then
      return nil, api_error { command = command, code = "EUPLOAD", id = id,
        errortext = ("volume %s: %s"):format(v.state, tostring(v.status or "")) }
    end
  end, opts)
end

local function with_defaults(params, defaults)
  local p = {}
  for k, v in pairs(defaults) do p[k] = v end
  for k, v in pairs(params or {}) do p[k:lower()] = v end
  return p
end

-- opts.checksum = true | "sha256" | "md5": send the file's digest so that the
-- server verifies what it received (one extra streaming read of the file).
local function add_checksum(p, file, opts)
  if not opts.checksum or p.checksum then return true end
  local algo = opts.checksum == "md5" and "md5" or "sha256"
  local sum, err, code = crypto[algo .. "_file"](file)
  if not sum then return nil, api_error { command = "checksum", code = code, errortext = err } end
  p.checksum = (algo == "md5" and "{MD5}" or "{SHA-256}") .. sum
  return true
end

-- A transfer that failed on the way (connection, timeout, 5xx) is worth a new URL; a refusal
-- of what was sent (4xx: not a VHD, bad checksum) is not.
local function transfer_failed(err)
  return err.code ~= "EUPLOAD" or (err.http_status or 0) >= 500
end

-- make(): a new salvage.stream for each attempt. Each attempt gets a new upload URL (POST
-- upload URLs are single-use); the entity of a failed one is deleted so the name stays unique.
local function upload_stream(self, command, kind, make, p, opts)
  local attempts, last = opts.attempts or 3, nil
  for attempt = 1, attempts do
    local s, serr, scode = make()
    if not s then return nil, api_error { command = command, code = scode or "EIO", errortext = serr } end
    local r, err = self:call(kind == "template" and "getUploadParamsForTemplate" or "getUploadParamsForVolume", p)
    if not r then s:close(); return nil, err end
    local up = r.getuploadparams
    if opts.on_created then
      local okc, cberr = opts.on_created(up.id)
      if not okc then s:close(); return nil, cberr end
    end
    local length = s:length()
    local res, uerr = self:post_upload(command, s, up, setmetatable({ format = p.format }, { __index = opts }))
    s:close()
    if res then
      local e, werr
      if kind == "template" then e, werr = self:wait_template(up.id, p, opts, command)
      else e, werr = self:wait_volume(up.id, p, opts, command) end
      if not e then return nil, werr end
      return e, { sha256 = res.sent_sha256, bytes = length, attempts = attempt }
    end
    last = uerr
    if not transfer_failed(uerr) or attempt == attempts then break end
    log.warn("upload failed; starting again from the first byte with a new upload URL",
      { command = command, id = up.id, attempt = attempt, error = uerr.errortext })
    local gone, derr
    if kind == "template" then
      gone, derr = self:async("deleteTemplate", { id = up.id, zoneid = p.zoneid, forced = true })
    else
      gone, derr = self:call("deleteVolume", { id = up.id })
    end
    if not gone then
      log.warn("could not delete the spent upload's " .. kind .. " (a later run removes it by its tag)",
        { id = up.id, error = tostring(derr) })
    end
  end
  return nil, last
end

-- A file (or, for a function, a stream per attempt) uploaded as a template or volume:
-- getUploadParams*, on_created, POST, then wait until the server has it.
local function upload(self, command, kind, source, p, opts)
  if type(source) == "function" then return upload_stream(self, command, kind, source, p, opts) end
  local st, serr, scode = sys.stat(source)
  if not st then return nil, api_error { command = command, code = scode, errortext = serr } end
  local ok, cerr = add_checksum(p, source, opts)
  if not ok then return nil, cerr end
  local r, err = self:call(kind == "template" and "getUploadParamsForTemplate" or "getUploadParamsForVolume", p)
  if not r then return nil, err end
  local up = r.getuploadparams
  if opts.on_created then
    local okc, cberr = opts.on_created(up.id)
    if not okc then return nil, cberr end
  end
  local _, uerr = self:post_upload(command, source, up, setmetatable({ format = p.format }, { __index = opts }))
  if uerr then return nil, uerr end
  if kind == "template" then return self:wait_template(up.id, p, opts, command) end
  return self:wait_volume(up.id, p, opts, command)
end

--- Upload a VHD as a template (getUploadParamsForTemplate + POST) and wait
-- until it is ready. source: a file path, or a function returning a new salvage.stream
-- (streamed from C; a failed transfer starts again with a new stream and a new URL, up
-- to opts.attempts = 3). params: name, zoneid, ostypeid, displaytext, account,
-- domainid, checksum, ... opts: {progress = function(done, total), poll_interval, job_timeout,
-- checksum = true | "md5" (files: compute and send the file's digest), filename, attempts,
-- on_created = function(id) -> true | nil, err: called once the server made the template,
-- before the upload (to tag and journal it; for a stream, at every attempt)}.
-- -> template, sent | nil, err; sent = {sha256, bytes, attempts} for a stream.
function Client:upload_template(source, params, opts)
  local p = with_defaults(params, { format = "VHD", hypervisor = "XenServer", displaytext = params and params.name })
  return upload(self, "upload_template", "template", source, p, opts or {})
end

--- Upload a VHD as a data volume (getUploadParamsForVolume + POST) and wait
-- until it is Uploaded. source and opts as for upload_template. params: name, zoneid,
-- diskofferingid, account, domainid, checksum.
function Client:upload_volume(source, params, opts)
  return upload(self, "upload_volume", "volume", source, with_defaults(params, { format = "VHD" }), opts or {})
end

--- The URL route: registerTemplate url= (served by the operator), then wait.
function Client:register_template(params, opts)
  local p = with_defaults(params, { format = "VHD", hypervisor = "XenServer", displaytext = params and params.name })
  local r, err = self:call("registerTemplate", p)
  if not r then return nil, err end
  local t = (r.template or {})[1]
  if not t then return nil, api_error { command = "registerTemplate", code = "EPROTO", errortext = "no template" } end
  return self:wait_template(t.id, p, opts or {}, "registerTemplate")
end

--- The URL route for volumes: uploadVolume url= (async), then wait for Uploaded.
function Client:upload_volume_url(params, opts)
  local p = with_defaults(params, { format = "VHD" })
  local r, err = self:async("uploadVolume", p, opts)
  if not r then return nil, err end
  return self:wait_volume(r.volume.id, p, opts or {}, "uploadVolume")
end

--- Credentials of a named profile (see salvage.config).
function M.profile(name)
  return require("salvage.config").profile(name)
end

--- from_profile(name, extra) -> client | nil, message: a client from a profile
-- name (or the environment); extra: client options over the profile's. A profile
-- that is itself a client (has a `call` function, as tests' fakes do) is returned.
function M.from_profile(name, extra)
  local prof, err = M.profile(name)
  if not prof then return nil, err end
  if type(prof.call) == "function" then return prof end
  local o = {}
  for k, v in pairs(prof) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  local ok, client, cerr = pcall(M.new, o)
  if not ok then return nil, tostring(client) end
  if not client then return nil, cerr end
  return client
end

return M
