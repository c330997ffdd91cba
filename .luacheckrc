std = "lua54"
max_line_length = 120
files["tests/lua"] = {
  std = "+busted",
  globals = { "TOP", "SALVAGE", "FIXTURES", "DATA", "INPUT", "CLOUDSTACK", "RUN", "SLURP" },
}
files["scripts"] = { globals = { "salvage" } }
