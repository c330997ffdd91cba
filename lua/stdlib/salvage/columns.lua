--- Aligned text columns for people (plan, report, state tables), and the same
-- rows as CSV for machines (--format csv).
-- Widths count UTF-8 characters, so names like "Spider Industries — Ω" line up;
-- the last column is never padded, so lines carry no trailing spaces.
local M = {}

local function width(s)
  return utf8.len(s) or #s
end

--- lines(rows [, {indent = "", gap = "  "}]) -> array of lines; rows are arrays of strings
function M.lines(rows, opts)
  local indent = opts and opts.indent or ""
  local gap = opts and opts.gap or "  "
  local widths = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do widths[i] = math.max(widths[i] or 0, width(c)) end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i == #r and c or (c .. (" "):rep(widths[i] - width(c)))
    end
    out[#out + 1] = indent .. table.concat(cells, gap)
  end
  return out
end

--- One CSV field (RFC 4180): quoted when it holds a comma, quote or newline; nil is empty.
function M.csv_field(v)
  if v == nil then return "" end
  local s = tostring(v)
  if s:find('[,"\r\n]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

--- csv(rows) -> CSV text, one line per row (the first row is the header).
function M.csv(rows)
  local out = {}
  for i, r in ipairs(rows) do
    local f = {}
    for j, c in ipairs(r) do f[j] = M.csv_field(c) end
    out[i] = table.concat(f, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

--- text(rows [, opts]) -> the lines joined with "\n"
function M.text(rows, opts)
  return table.concat(M.lines(rows, opts), "\n")
end

return M
