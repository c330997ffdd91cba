local json = require "salvage.json"

describe("salvage.json", function()
  it("sorts keys at every level", function()
    assert.are.equal('{"a":{"x":1,"y":2},"b":true,"c":"s"}', json.encode({ c = "s", b = true, a = { y = 2, x = 1 } }))
  end)

  it("keeps integers integral and floats exact", function()
    assert.are.equal("[1,9007199254740993,0.5,2]", json.encode({ 1, 9007199254740993, 0.5, 2.0 }))
  end)

  it("encodes marked empty arrays as [] and plain empty tables as {}", function()
    assert.are.equal('{"a":[],"b":{}}', json.encode({ a = json.array(), b = {} }))
  end)

  it("escapes control characters, quotes and backslashes, keeps UTF-8", function()
    assert.are.equal('"a\\"b\\\\c\\n\\u0001\\t🦀é"', json.encode('a"b\\c\n\1\t🦀é'))
  end)

  it("refuses cycles, functions and NaN with a message", function()
    local t = {}
    t.self = t
    assert.has_error(function() json.encode(t) end, "cannot encode a table with a cycle in JSON")
    assert.has_error(function() json.encode({ print }) end, "cannot encode a function in JSON")
    assert.has_error(function() json.encode(0 / 0) end)
  end)

  it("round-trips arrays, empty arrays, nulls and nested objects", function()
    local text = '{"a":[],"b":{},"c":[1,2,{"d":null}],"e":"x\\u00e9\\n","f":-1500,"g":[[]]}'
    local v = assert(json.decode(text))
    assert.are.equal(text:gsub("\\u00e9", "é"), json.encode(v))
    assert.are.equal(json.null, v.c[3].d)
  end)

  it("decodes surrogate pairs", function()
    assert.are.equal("😀", json.decode('"\\ud83d\\ude00"'))
  end)

  it("reports malformed input with a position instead of raising", function()
    local v, err = json.decode('{"a": [1, 2,, 3]}')
    assert.is_nil(v)
    assert.matches("invalid JSON at line 1", err)
    v, err = json.decode('{"a": 1} trailing')
    assert.is_nil(v)
    assert.matches("trailing data", err)
    assert.is_nil((json.decode('"unterminated')))
  end)

  it("pretty-prints with indentation and a final newline", function()
    assert.are.equal('{\n  "a": [\n    1\n  ]\n}\n', json.pretty({ a = { 1 } }))
  end)
end)
