"""Writes the words of a GloVe index parquet file, one per line, in row order."""
import sys

import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
column = None
for name in table.column_names:
    if table.schema.field(name).type in ("string", "large_string") or str(table.schema.field(name).type) in ("string", "large_string"):
        column = name
        break
if column is None:
    sys.exit(f"no string column in {sys.argv[1]}: {table.schema}")
words = table.column(column).to_pylist()
with open(sys.argv[2] + ".partial", "w", encoding="utf-8") as out:
    for word in words:
        out.write(str(word).replace("\n", " ") + "\n")
import os
os.replace(sys.argv[2] + ".partial", sys.argv[2])
