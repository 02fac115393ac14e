#!/usr/bin/env bash
# t_convert.sh — `vdp convert` and `vdp info` on the diffusers fixtures in test/data/models/*/:
# fp16 and fp32 output from each source variant present (a missing variant must fail cleanly), and the
# parameter count of `vdp info` against the sizes of the safetensors files (computed here from their
# headers, independently of vdp). Uses ./vdp (make) or $VDP.
set -u
cd "$(dirname "$0")/.."
VDP=${VDP:-./vdp}
T=$(mktemp -d /tmp/t_convert.XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
ok() { echo "ok - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }

if [ ! -x "$VDP" ]; then
  fail "vdp_binary $VDP not found (run make)"
  exit 1
fi
nfields=$(grep -cE '^\s+X(I|F|IA|FA)\(' vdp.h)

# Parameters of a safetensors file whose tensors all have one dtype: data bytes / element size.
# Data bytes = file size - 8 - header length (the u64 at the start); prints "count dtype".
st_params() {
  local f=$1 n size dts
  n=$(od -An -t u8 -N8 "$f" | tr -d ' ')
  size=$(stat -c %s "$f")
  dts=$(head -c $((8 + n)) "$f" | grep -ao '"dtype":"[A-Z0-9_]*"' | sort -u | sed 's/.*:"\(.*\)"/\1/' | tr '\n' ' ')
  case "$dts" in
    "F32 ") echo "$(((size - 8 - n) / 4)) F32" ;;
    "F16 " | "BF16 ") echo "$(((size - 8 - n) / 2)) ${dts% }" ;;
    *) echo "0 mixed($dts)" ;;
  esac
}

# "  name   value (...)" line of a section of `vdp info`
info_value() { grep -E "^  $2 " "$1" | awk '{print $2}'; }

for dir in test/data/models/*/; do
  dir=${dir%/}
  m=$(basename "$dir")
  [ -f "$dir/model_index.json" ] || continue
  for variant in fp16 fp32; do
    suffix=$([ $variant = fp16 ] && echo ".fp16" || echo "")
    files=("$dir/unet/diffusion_pytorch_model$suffix.safetensors" "$dir/vae/diffusion_pytorch_model$suffix.safetensors"
      "$dir/image_encoder/model$suffix.safetensors")
    if [ ! -f "${files[0]}" ]; then
      # This variant is absent: asking for it must fail with a message naming the file.
      out="$T/$m-$variant-missing.vdpw"
      if "$VDP" convert "$dir" "$out" --variant $variant >"$T/log" 2>&1; then
        fail "convert_${m}_variant_${variant}_absent succeeded without its files"
      elif grep -q "not found" "$T/log" && [ ! -e "$out" ] && [ ! -e "$out.tmp" ]; then
        ok "convert_${m}_variant_${variant}_absent $(grep -o 'error: .*' "$T/log" | head -c 150)"
      else
        fail "convert_${m}_variant_${variant}_absent unclear failure: $(tail -1 "$T/log")"
      fi
      continue
    fi
    # expected parameter count from the safetensors files
    want=0
    for f in "${files[@]}"; do
      read -r cnt dt < <(st_params "$f")
      want=$((want + cnt))
    done
    for dtype in fp16 fp32; do
      name="convert_${m}_from_${variant}_to_${dtype}"
      out="$T/$m-$variant-$dtype.vdpw"
      t0=$(date +%s.%N)
      if ! "$VDP" convert "$dir" "$out" --dtype $dtype --variant $variant >"$T/log" 2>&1; then
        fail "$name exit status $?: $(tail -2 "$T/log")"
        continue
      fi
      secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
      [ -e "$out.tmp" ] && fail "$name left $out.tmp behind"
      if ! "$VDP" info "$out" >"$T/info" 2>"$T/infoerr"; then
        fail "$name info failed: $(cat "$T/infoerr")"
        continue
      fi
      got=$(info_value "$T/info" total)
      dname=$([ $dtype = fp16 ] && echo F16 || echo F32)
      esz=$([ $dtype = fp16 ] && echo 2 || echo 4)
      bytes=$(info_value "$T/info" $dname)
      ncfg=$(sed -n '/^configuration:/,/^parameters:/p' "$T/info" | grep -c '=')
      in_ch=$(grep -o '"in_channels": *[0-9]*' "$dir/unet/config.json" | grep -o '[0-9]*$')
      levels=$(sed -n '/"block_out_channels"/,/]/p' "$dir/unet/config.json" | grep -cE '^\s*[0-9]+,?\s*$')
      size=$(stat -c %s "$out")
      if [ "$got" = "$want" ] && [ "$bytes" = $((want * esz)) ] && [ "$ncfg" = "$nfields" ] &&
        grep -q "^  unet_in_channels=$in_ch " "$T/info" && grep -q "^  unet_levels=$levels " "$T/info" &&
        [ "$size" -ge $((want * esz)) ]; then
        ok "$name params $got (safetensors: $want), $dname bytes $bytes, $ncfg config fields, file $size bytes, ${secs}s"
      else
        fail "$name params $got vs safetensors $want, $dname bytes $bytes vs $((want * esz)), config fields $ncfg vs $nfields, in_channels $in_ch, levels $levels, size $size"
      fi
    done
  done
done

# Error paths: each must exit non-zero with a message.
first=$(ls "$T"/*.vdpw 2>/dev/null | head -1)
if [ -n "$first" ]; then
  head -c $(($(stat -c %s "$first") - 1)) "$first" >"$T/trunc.vdpw"
  if "$VDP" info "$T/trunc.vdpw" >/dev/null 2>"$T/err"; then fail "info_truncated_file accepted"
  else ok "info_truncated_file $(head -c 200 "$T/err")"; fi
  printf 'VDPW\002\000\000\000' | cat - <(tail -c +9 "$first") >"$T/v2.vdpw"
  if "$VDP" info "$T/v2.vdpw" >/dev/null 2>"$T/err"; then fail "info_version_2 accepted"
  elif grep -q "version 2" "$T/err"; then ok "info_version_2 $(head -c 200 "$T/err")"
  else fail "info_version_2 unclear message: $(cat "$T/err")"; fi
else
  fail "no converted file to test the error paths"
fi
if "$VDP" info vdp.h >/dev/null 2>"$T/err"; then fail "info_not_vdpw accepted"; else ok "info_not_vdpw $(head -c 200 "$T/err")"; fi
if "$VDP" convert /nonexistent "$T/x.vdpw" >/dev/null 2>"$T/err"; then fail "convert_missing_dir accepted"
else ok "convert_missing_dir $(head -c 200 "$T/err")"; fi
if "$VDP" convert test/data/models/tiny "$T/x.vdpw" --dtype int8 >/dev/null 2>"$T/err"; then fail "convert_bad_dtype accepted"
else ok "convert_bad_dtype $(head -c 200 "$T/err")"; fi

[ $fails -eq 0 ]
