# Sourced by install.sh and the test script: puts the pinned Bun on PATH, from npm when it is missing.
# Bun is the only tool fetched, and only from the npm registry (package "bun"), into ./.tools.
mars_bun_version=$(sed -n 's/.*"packageManager": *"bun@\([^"]*\)".*/\1/p' package.json)
mars_tools="$PWD/.tools"
if [ -x "$mars_tools/node_modules/.bin/bun" ]; then
  export PATH="$mars_tools/node_modules/.bin:$PATH"
fi
if ! command -v bun >/dev/null 2>&1 || [ "$(bun --version 2>/dev/null)" != "$mars_bun_version" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "mars: neither Bun $mars_bun_version nor npm (to fetch it) is available" >&2
    exit 1
  fi
  echo "mars: installing Bun $mars_bun_version from npm into $mars_tools" >&2
  mkdir -p "$mars_tools"
  npm install --prefix "$mars_tools" --no-audit --no-fund --no-save --loglevel=error \
    "bun@$mars_bun_version" >&2
  export PATH="$mars_tools/node_modules/.bin:$PATH"
fi
