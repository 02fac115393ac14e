#!/usr/bin/env bash
# t_files.sh — files are safe (issue 10): every output through an exclusive temporary and a rename,
# never onto a device, FIFO, directory, link or read-only file, nothing replaced without --overwrite;
# every input opened without blocking; every cheap check before the weights load; no partial output
# that looks complete; usage errors exit 2; (issue 20) no output onto one of the run's own inputs. Each
# block names the finding of the issue it covers.
# VDP=path overrides the binary (default ./vdp). Runs as root too (CI does): the read-only cases use
# the mode bits and /proc, which root cannot write either.
source "$(dirname "$0")/lib.sh"
case "$VDP" in /*) ;; *) VDP=$PWD/$VDP ;; esac  # the tests cd into their folders

convert_tiny3
IMG=test/data/images/test_48x40.png
COMMON=(--model "$M" --height 32 --width 48 --num-inference-steps 2 --num-frames 3)

# run NAME WANT_RC WANT_SUBSTRING CMD...: the exit status, the message, within 20 s (a hang fails)
run() {
  local name=$1 want_rc=$2 want=$3; shift 3
  timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -eq "$want_rc" ] && grep -q -- "$want" "$tmp/err"; then ok "$name (exit $rc)"; return 0; fi
  bad "$name: want exit $want_rc and '$want', got $rc$([ $rc -eq 124 ] && echo ' (hung: killed after 20 s)'): $(head -c 300 "$tmp/err")"
  return 1
}
# the run failed before any work: no step progress, no weights loaded
early() { ! grep -q "step \|weights " "$tmp/err" && ok "$1: refused before the weights load" || bad "$1: refused only after the run started"; }
no_temps() {  # DIR NAME: no temporary (.NAME.XXXXXXXX.tmp) left behind
  local n; n=$(find "$1" -maxdepth 1 -name '.*.tmp' | wc -l)
  [ "$n" -eq 0 ] && ok "$2: no temporary left" || bad "$2: $n temporaries left: $(find "$1" -maxdepth 1 -name '.*.tmp' | head -3)"
}

# ---- 1. convert replaces what it should not
d=$tmp/c1; mkdir -p "$d"
# A device target. Not /dev/null itself: a regression would replace the machine's /dev/null (the issue's
# report). A node of our own with /dev/null's numbers needs root (CI runs as root); a FIFO otherwise.
if mknod "$d/null" c 1 3 2>/dev/null; then devkind="character device"; else mkfifo "$d/null"; devkind="FIFO"; fi
run "convert onto a device (/dev/null's twin) refused" 1 "$devkind" "$VDP" convert test/data/models/tiny3 "$d/null"
{ [ -c "$d/null" ] || [ -p "$d/null" ]; } && ok "the device node is still a device" || bad "the device node was replaced by a file"
mkfifo "$d/pipe.vdpw"
run "convert onto a FIFO refused" 1 "FIFO" "$VDP" convert test/data/models/tiny3 "$d/pipe.vdpw" --overwrite
[ -p "$d/pipe.vdpw" ] && ok "the FIFO is still a FIFO" || bad "the FIFO was replaced"
echo precious >"$d/victim.txt"; ln -s victim.txt "$d/sym.vdpw.tmp"
if "$VDP" convert test/data/models/tiny3 "$d/sym.vdpw" >/dev/null 2>"$tmp/err" && [ "$(head -c 20 "$d/victim.txt" | tr -d '\0')" = precious ] &&
   [ -L "$d/sym.vdpw.tmp" ] && "$VDP" info "$d/sym.vdpw" >/dev/null 2>&1; then
  ok "a symlink at OUT.tmp is neither followed nor removed; OUT written"
else bad "symlink at OUT.tmp: victim now '$(head -c 40 "$d/victim.txt" | tr -cd '[:print:]')', link $([ -L "$d/sym.vdpw.tmp" ] && echo kept || echo gone)"; fi
echo mine >"$d/fail.vdpw.tmp"
run "convert of a missing folder fails" 1 "model_index.json" "$VDP" convert "$tmp/nonexistent" "$d/fail.vdpw"
[ "$(cat "$d/fail.vdpw.tmp" 2>/dev/null)" = mine ] && ok "a failed convert leaves an unrelated OUT.tmp alone" || bad "a failed convert deleted OUT.tmp"
cp "$M" "$d/exists.vdpw"; echo x >"$d/exists.vdpw"
run "convert refuses an existing output" 1 "already exists, not replaced (give --overwrite" "$VDP" convert test/data/models/tiny3 "$d/exists.vdpw"
[ "$(head -c 4 "$d/exists.vdpw" | tr -d '\0')" = x ] && ok "existing output untouched" || bad "existing output changed"
if "$VDP" convert test/data/models/tiny3 "$d/exists.vdpw" --overwrite >/dev/null 2>"$tmp/err" && "$VDP" info "$d/exists.vdpw" >/dev/null 2>&1; then
  ok "convert --overwrite replaces a regular file"; else bad "convert --overwrite: $(tail -1 "$tmp/err")"; fi
run "convert onto a directory refused" 1 "is a directory" "$VDP" convert test/data/models/tiny3 "$d" --overwrite
(ulimit -f 64; exec "$VDP" convert test/data/models/tiny3 "$d/full.vdpw") >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ ! -e "$d/full.vdpw" ] && grep -q "File too large" "$tmp/err" && ok "convert on a full disk (ulimit -f): exit 1, no output" ||
  bad "convert on a full disk: exit $rc, output $([ -e "$d/full.vdpw" ] && echo PRESENT || echo absent): $(tail -1 "$tmp/err")"
no_temps "$d" "convert"

# ---- 2. FIFOs and other special files never hang
f=$tmp/fifo; mkdir -p "$f"; mkfifo "$f/f.vdpw" "$f/f.png"
run "info on a FIFO" 1 "FIFO" "$VDP" info "$f/f.vdpw"
run "generate --model FIFO" 1 "FIFO" "$VDP" generate "${COMMON[@]:2}" --model "$f/f.vdpw" --image "$IMG" --out "$f/o.npy"
run "generate --image FIFO" 1 "FIFO" "$VDP" generate "${COMMON[@]}" --image "$f/f.png" --out "$f/o.npy"
cp -r test/data/models/tiny3 "$f/src"; rm "$f/src/unet/config.json"; mkfifo "$f/src/unet/config.json"
run "convert with a FIFO at unet/config.json" 1 "FIFO" "$VDP" convert "$f/src" "$f/o.vdpw"
for kind in dir fifo devzero; do  # 7: what stands where a safetensors file belongs is named
  cp -r test/data/models/tiny3 "$f/$kind"
  for st in "$f/$kind"/vae/*.safetensors; do rm "$st"; done
  st=$f/$kind/vae/diffusion_pytorch_model.safetensors
  case $kind in dir) mkdir "$st"; want="is a directory" ;; fifo) mkfifo "$st"; want="FIFO" ;; devzero) ln -s /dev/zero "$st"; want="character device" ;; esac
  run "convert: a $kind at the safetensors path is named" 1 "$want" "$VDP" convert "$f/$kind" "$f/$kind.vdpw"
done

# ---- 3. pixel bombs: refused from the header, the limit named, the flag raises it
printf '\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x40\x00\x00\x00\x40\x00\x08\x02\x00\x00\x00\x26\xaa\x87\xd3\x00\x00\x00\x0b\x49\x44\x41\x54\x78\x9c\x63\x60\x40\x05\x00\x00\x10\x00\x01\x39\xbd\x8f\x65\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82' >"$tmp/bomb.png"
t0=$(date +%s.%N)
run "16384x16384 PNG refused" 1 "exceeds the limit of 178956970 pixels" "$VDP" generate "${COMMON[@]}" --image "$tmp/bomb.png" --out "$tmp/b.npy" && early "pixel bomb"
awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{exit !(b - a < 5)}' && ok "pixel bomb refused in under 5 s" || bad "pixel bomb took 5 s or more"
grep -q -- "--max-pixels" "$tmp/err" && ok "the pixel-limit message names --max-pixels" || bad "no --max-pixels in: $(cat "$tmp/err")"
run "--max-pixels raises the limit (the decoder then finds the data short)" 1 "Not enough image data" "$VDP" generate "${COMMON[@]}" --max-pixels 268435456 --image "$tmp/bomb.png" --out "$tmp/b.npy"
printf '\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x4e\x20\x00\x00\x00\x0a\x08\x02\x00\x00\x00\xde\x11\xf9\x1a\x00\x00\x00\x0b\x49\x44\x41\x54\x78\x9c\x63\x60\x40\x05\x00\x00\x10\x00\x01\x39\xbd\x8f\x65\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82' >"$tmp/wide.png"
run "7: a PNG wider than 16384 gets a clear message" 1 "20000x10 out of range (each side 1..16384)" "$VDP" generate "${COMMON[@]}" --image "$tmp/wide.png" --out "$tmp/b.npy"

# ---- 4. late failures become early ones
o=$tmp/o4; mkdir -p "$o/dir.npy"
run "--out naming a directory" 1 "is a directory" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$o/dir.npy" && early "--out directory"
echo old >"$o/ro.npy"; chmod 444 "$o/ro.npy"
run "--overwrite onto a read-only file" 1 "is read-only" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$o/ro.npy" --overwrite && early "read-only --out"
[ "$(cat "$o/ro.npy")" = old ] && ok "read-only file untouched" || bad "read-only file changed"
if [ -e /proc/self/stat ]; then  # procfs takes no new file, for root either
  run "--out in a folder that takes no file (/proc)" 1 "cannot create a file in /proc" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out /proc/vdp_t_files.npy && early "unwritable folder"
else echo "ok - unwritable folder skipped: /proc is not mounted"; fi
if [ "$(id -u)" -ne 0 ]; then  # a read-only folder stops only non-root users
  mkdir -p "$o/rodir"; chmod 555 "$o/rodir"
  run "--out in a read-only folder" 1 "cannot create a file in" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$o/rodir/x.npy" && early "read-only folder"
fi
run ".mp4 with no ffmpeg on PATH" 1 "ffmpeg, which is not on PATH" env PATH=/nonexistent_vdp "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$o/v.mp4" && early "no ffmpeg"
cp "$IMG" "$o/ok.png"; printf 'broken' >"$o/bad.png"
run "several --image: a bad second image" 1 "bad.png" "$VDP" generate "${COMMON[@]}" --image "$o/ok.png" --image "$o/bad.png" --out "$o/m.npy" && early "bad second image"
[ ! -e "$o/m_v0.npy" ] && ok "no video written when a later image is bad" || bad "video 0 written before the bad image was found"
run "--stages 2 with a bad second image" 1 "bad.png" "$VDP" generate "${COMMON[@]}" --stages 2 --image "$o/ok.png" --image "$o/bad.png" --out "$o/s.npy" && early "bad second image, --stages 2"

# a stand-in for ffmpeg that behaves like it where it matters: an argument starting with '-' is an
# option, "pipe:" is a protocol (stdout), "file:" a file; FAKE_FFMPEG_FAIL=1 writes half a file and fails
mkdir -p "$tmp/bin"
cat >"$tmp/bin/ffmpeg" <<'FAKE'
#!/usr/bin/env bash
printf '%s\n' "$@" >"$FAKE_FFMPEG_LOG"
cat >/dev/null
last=${*: -1}
case $last in
  -*) echo "Unrecognized option '${last#-}'" >&2; exit 1 ;;
  pipe:*) printf FAKEVIDEO; exit 0 ;;
  file:*) f=${last#file:} ;;
  *) f=$last ;;
esac
if [ -n "${FAKE_FFMPEG_FAIL:-}" ]; then printf 'half a vid' >"$f"; exit 1; fi
printf FAKEVIDEO >"$f"
FAKE
chmod +x "$tmp/bin/ffmpeg"
v=$tmp/v; mkdir -p "$v"
export FAKE_FFMPEG_LOG=$tmp/ffmpeg.args
(cd "$v" && PATH=$tmp/bin:$PATH "$VDP" generate "${COMMON[@]}" --image "$OLDPWD/$IMG" --out -x.mp4) >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] && [ "$(cat "$v/-x.mp4" 2>/dev/null)" = FAKEVIDEO ] && ok "--out -x.mp4: ffmpeg cannot take the name for an option" ||
  bad "--out -x.mp4: exit $rc, file $(cat "$v/-x.mp4" 2>/dev/null): $(tail -1 "$tmp/err")"
(cd "$v" && PATH=$tmp/bin:$PATH "$VDP" generate "${COMMON[@]}" --image "$OLDPWD/$IMG" --out pipe:1.gif) >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] && [ -f "$v/pipe:1.gif" ] && [ "$(cat "$v/pipe:1.gif")" = FAKEVIDEO ] && ! grep -q FAKEVIDEO "$tmp/out" &&
  ok "6: --out pipe:1.gif is a file named pipe:1.gif, not ffmpeg's pipe protocol" || bad "--out pipe:1.gif: exit $rc, stdout $(head -c 60 "$tmp/out")"
grep -q '^-f$' "$FAKE_FFMPEG_LOG" && tail -1 "$FAKE_FFMPEG_LOG" | grep -q '^file:' && ok "ffmpeg gets -f and a file: target" || bad "ffmpeg args: $(tr '\n' ' ' <"$FAKE_FFMPEG_LOG")"

# ---- 5. partial output never looks complete
p=$tmp/p5; mkdir -p "$p"
(ulimit -f 8; exec "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/o.npy") >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ ! -e "$p/o.npy" ] && grep -q "File too large" "$tmp/err" && ok "full disk (ulimit -f): exit 1 and no o.npy" ||
  bad "full disk: exit $rc, o.npy $([ -e "$p/o.npy" ] && echo "PRESENT ($(stat -c %s "$p/o.npy") bytes)" || echo absent): $(tail -1 "$tmp/err")"
FAKE_FFMPEG_FAIL=1 PATH=$tmp/bin:$PATH "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/o.mp4" >/dev/null 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ ! -e "$p/o.mp4" ] && ok "a failed ffmpeg leaves no o.mp4" || bad "failed ffmpeg: exit $rc, o.mp4 $([ -e "$p/o.mp4" ] && echo PRESENT || echo absent)"
no_temps "$p" "failed outputs"
# interrupted while ffmpeg encodes (SIGTERM): the temporary goes with the process, no o2.mp4 appears.
# This stand-in opens its output first and writes only after a pause, as a slow encode would.
mkdir -p "$tmp/slowbin"
cat >"$tmp/slowbin/ffmpeg" <<'FAKE'
#!/usr/bin/env bash
f=${*: -1}; f=${f#file:}
exec 3>"$f"
cat >/dev/null
sleep 2
printf FAKEVIDEO >&3
FAKE
chmod +x "$tmp/slowbin/ffmpeg"
PATH=$tmp/slowbin:$PATH "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/o2.mp4" >/dev/null 2>"$tmp/err" &
pid=$!
for _ in $(seq 600); do  # up to 60 s on a loaded machine
  [ -n "$(find "$p" -maxdepth 1 -name '.o2.mp4.*.tmp')" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
seen=$(find "$p" -maxdepth 1 -name '.o2.mp4.*.tmp' | wc -l)
kill -TERM "$pid" 2>/dev/null; wait "$pid"; rc=$?
sleep 2.5  # the stand-in finishes writing into its (now unlinked) file
[ "$seen" -eq 1 ] && [ $rc -eq 143 ] && [ ! -e "$p/o2.mp4" ] && [ -z "$(find "$p" -maxdepth 1 -name '.o2.mp4.*.tmp')" ] &&
  ok "SIGTERM during the encode: the temporary is removed, no o2.mp4" ||
  bad "SIGTERM during the encode: temporary seen $seen, exit $rc, o2.mp4 $([ -e "$p/o2.mp4" ] && echo PRESENT || echo absent), left: $(find "$p" -maxdepth 1 -name '.o2*' | wc -l)"
mkdir "$p/f_002.png"  # frame 2 cannot be written: refused before any frame is
run "a PNG sequence whose frame 2 is blocked" 1 "f_002.png: is a directory" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/f.png" && early "blocked frame"
[ ! -e "$p/f_000.png" ] && ok "no frame written when one cannot be" || bad "frames 000-001 left behind"
touch "$p/s_003.png" "$p/s_004.png"
run "stale frames of a longer sequence refused" 1 "s_003.png, .*s_004.png\|s_004.png, .*s_003.png" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/s.png" && early "stale frames"
[ ! -e "$p/s_000.png" ] && ok "nothing written beside stale frames" || bad "frames written beside stale ones"
if "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/s.png" --overwrite >/dev/null 2>"$tmp/err" && [ -f "$p/s_002.png" ] &&
   [ ! -e "$p/s_003.png" ] && [ ! -e "$p/s_004.png" ]; then ok "--overwrite: 3 new frames, stale 003/004 removed"
else bad "--overwrite over stale frames: $(ls "$p" | tr '\n' ' ') $(tail -1 "$tmp/err")"; fi
run "existing PNG frames refused without --overwrite" 1 "already exists" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$p/s.png"

# ---- 6. silent acceptance
cp -r test/data/models/tiny3 "$tmp/nan"
st=$(ls "$tmp"/nan/unet/*.safetensors | head -1); n=$(od -An -t u8 -N8 "$st" | tr -d ' '); sz=$(stat -c %s "$st")
off=$(( (8 + n + (sz - 8 - n) / 2) & ~3 ))
printf '\x00\x00\xc0\x7f\x00\x7e\x00\x00' | dd of="$st" bs=1 seek="$off" conv=notrunc 2>/dev/null  # a NaN (f32 or f16 view)
run "convert refuses NaN weights, naming the tensor" 1 "holds a non-finite value" "$VDP" convert "$tmp/nan" "$tmp/nan.vdpw"
grep -q "tensor '" "$tmp/err" && [ ! -e "$tmp/nan.vdpw" ] && ok "non-finite: tensor named, no output" || bad "non-finite: $(cat "$tmp/err")"
run "--nccl-id-file without --world" 2 "needs --world" "$VDP" generate "${COMMON[@]}" --image "$IMG" --nccl-id-file "$tmp/id" --out "$tmp/x.npy"
run "seeds that would wrap" 2 "wrap" "$VDP" generate "${COMMON[@]}" --image "$IMG" --seed 18446744073709551615 --num-videos 2 --out "$tmp/x.npy"
run "GIF --fps above 50" 2 "at most 50 fps" "$VDP" generate "${COMMON[@]}" --image "$IMG" --fps 1000 --out "$tmp/x.gif"
run "hex float refused" 2 "decimal" "$VDP" generate "${COMMON[@]}" --image "$IMG" --noise-aug-strength 0x10 --out "$tmp/x.npy"
run "leading space refused" 2 "decimal" "$VDP" generate "${COMMON[@]}" --image "$IMG" --seed " 5" --out "$tmp/x.npy"
run "inf refused" 2 "decimal" "$VDP" generate "${COMMON[@]}" --image "$IMG" --noise-aug-strength inf --out "$tmp/x.npy"
mkdir -p "$tmp/dump"; echo keep >"$tmp/dump/clip_pixel_values.npy"
run "--dump into a non-empty folder refused" 1 "not empty" "$VDP" generate "${COMMON[@]}" --image "$IMG" --dump "$tmp/dump" --out "$tmp/d.npy" && early "--dump not empty"
[ "$(head -c 8 "$tmp/dump/clip_pixel_values.npy" | tr -d '\0')" = keep ] && ok "--dump folder untouched" || bad "--dump folder changed"
"$VDP" generate "${COMMON[@]}" --image "$IMG" --dump "$tmp/dump" --overwrite --out "$tmp/d.npy" >/dev/null 2>"$tmp/err" &&
  [ "$(head -c 6 "$tmp/dump/clip_pixel_values.npy" | tail -c 5)" = NUMPY ] && ok "--dump --overwrite replaces the folder's files" || bad "--dump --overwrite: $(tail -1 "$tmp/err")"

# ---- 7. messages and exit codes
run "--image DIR" 1 "is a directory, not a regular file" "$VDP" generate "${COMMON[@]}" --image "$tmp" --out "$tmp/x.npy"
run "a stray positional argument" 2 "unexpected argument 'stray'" "$VDP" generate "${COMMON[@]}" --image "$IMG" stray --out "$tmp/x.npy"
run "an unknown flag in last position" 2 "unknown option --bogus" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$tmp/x.npy" --bogus
run "a missing value" 2 "--seed: missing value" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$tmp/x.npy" --seed
run "--model given a diffusers folder" 1 "vdp convert test/data/models/tiny3" "$VDP" generate "${COMMON[@]:2}" --model test/data/models/tiny3 --image "$IMG" --out "$tmp/x.npy"
run "--out without extension" 2 "no file extension" "$VDP" generate "${COMMON[@]}" --image "$IMG" --out "$tmp/noext"
run "generate usage error exits 2" 2 "is required" "$VDP" generate --image "$IMG" --out "$tmp/x.npy"
run "convert usage error exits 2" 2 "unknown option" "$VDP" convert --bogus
run "sim usage error exits 2" 2 "" "$VDP" sim --stages abc
run "sim refuses hex numbers" 2 "0x2" "$VDP" sim --stages 0x2
run "sim refuses hex floats" 2 "0x1p3" "$VDP" sim --step-ms 0x1p3
run "sim flag given twice" 2 "--stages is given twice" "$VDP" sim --stages 2 --stages 3
run "sim --latent-shape values are no flags" 0 "" "$VDP" sim --latent-shape 1 2 3 --num-inference-steps 2
"$VDP" --help | grep -aq -- "--variant" && ok "top-level usage lists --variant" || bad "top-level usage lacks --variant"
"$VDP" --help | grep -aq "exit status" && ok "top-level usage states the exit codes" || bad "usage lacks the exit codes"

# ---- 8. convert never destroys its own input (issue 20): an output that is the same file (device and
# inode) as any file the run reads is refused before any work, naming both; also through a hard link,
# another spelling of the path, or a file inside the source folder
d=$tmp/c8; mkdir -p "$d"
cp test/data/sgm/svd_mini.safetensors "$d/x.safetensors"
cp -r test/data/models/tiny3 "$d/tiny3copy"
same_file() {  # NAME SRC OUT FILE_THAT_MUST_STAY
  local name=$1 src=$2 out=$3 keep=$4 sum
  sum=$(sha256sum <"$keep")
  run "$name refused" 1 "is the same file as the input" "$VDP" convert --overwrite "$src" "$out" && early "$name"
  grep -q -- "$(basename "$keep")" "$tmp/err" && ok "$name: the message names the input" || bad "$name: the input is not named: $(head -c 300 "$tmp/err")"
  [ "$(sha256sum <"$keep")" = "$sum" ] && ok "$name: the input is intact" || bad "$name: the input was changed"
  ! grep -q "convert: .*%" "$tmp/err" && ok "$name: no conversion started" || bad "$name: the conversion ran"
}
same_file "SGM file onto itself" "$d/x.safetensors" "$d/x.safetensors" "$d/x.safetensors"
same_file "SGM file onto itself by another spelling" "$d/x.safetensors" "$d/./x.safetensors" "$d/x.safetensors"
ln "$d/x.safetensors" "$d/hard.vdpw"
same_file "SGM file onto a hard link to it" "$d/x.safetensors" "$d/hard.vdpw" "$d/x.safetensors"
same_file "folder onto its UNet weights" "$d/tiny3copy" "$d/tiny3copy/unet/diffusion_pytorch_model.fp16.safetensors" \
  "$d/tiny3copy/unet/diffusion_pytorch_model.fp16.safetensors"
same_file "folder onto its model_index.json" "$d/tiny3copy" "$d/tiny3copy/model_index.json" "$d/tiny3copy/model_index.json"
ln "$d/tiny3copy/vae/config.json" "$d/vaecfg.vdpw"
same_file "folder onto a hard link to its VAE config" "$d/tiny3copy" "$d/vaecfg.vdpw" "$d/tiny3copy/vae/config.json"
"$VDP" convert --overwrite "$d/tiny3copy" "$d/tiny3copy/out.vdpw" >/dev/null 2>"$tmp/err" && "$VDP" info "$d/tiny3copy/out.vdpw" >/dev/null &&
  ok "a new file inside the source folder is fine" || bad "convert into the source folder: $(tail -1 "$tmp/err")"
# generate: the output is not one of the inputs either (a PNG sequence's frame over the input image)
cp "$IMG" "$d/o_000.png"
run "generate --out over its own --image refused" 1 "is the same file as the input" "$VDP" generate "${COMMON[@]}" \
  --image "$d/o_000.png" --overwrite --out "$d/o.png" && early "generate --out over its --image"
cmp -s "$IMG" "$d/o_000.png" && ok "the input image is intact" || bad "the input image was replaced"
# convert's usage errors and names (exit 2, before any work)
run "convert with an empty source name" 2 "source name is empty" "$VDP" convert "" "$d/e.vdpw"
run "convert with an empty output name" 2 "output name is empty" "$VDP" convert test/data/models/tiny3 ""
run "convert output name with a newline" 2 "control character" "$VDP" convert test/data/models/tiny3 "$d/a
b.vdpw"
run "convert --dtype given twice" 2 "--dtype is given twice" "$VDP" convert test/data/models/tiny3 "$d/t.vdpw" --dtype fp32 --dtype fp16
[ ! -e "$d/t.vdpw" ] && [ ! -e "$d/e.vdpw" ] && ok "nothing written by the refused conversions" || bad "a refused conversion wrote output"

[ $fails -eq 0 ]
