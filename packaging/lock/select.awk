# Prints the entries of a hashed requirements file (packaging/lock/requirements.txt) whose
# package is among `names` (keep=1) or is not (keep=0); comments are left out.
#   awk -v names="setuptools uv" -v keep=1 -f packaging/lock/select.awk packaging/lock/requirements.txt
function canonical(s) { s = tolower(s); gsub(/[-_.]+/, "-", s); return s }
BEGIN { n = split(names, list, /[ \t\n]+/); for (i = 1; i <= n; i++) if (list[i] != "") wanted[canonical(list[i])] = 1 }
/^[A-Za-z0-9]/ { name = $0; sub(/[=<>!~ ;\[].*/, "", name); printing = ((canonical(name) in wanted) == keep) }
/^($|#)/ { printing = 0 }
printing && !/^[ \t]*#/ { print }
