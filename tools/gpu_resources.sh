#!/usr/bin/env bash
# tools/gpu_resources.sh — every kernel's registers, spills, stack and static shared memory from ptxas
# (nvcc -Xptxas -v, one compile per architecture: sm_80, sm_86, sm_89, sm_90), and the occupancy of each
# launch configuration the backend uses, computed from each architecture's per-SM limits.
#   tools/gpu_resources.sh [--out FILE] [--check] [--configs FILE]
#     --out FILE     write the Markdown report there (default: stdout); `make gpu-resources` writes
#                    bench/gpu-resources.md
#     --check        also print "ok - / FAIL - ptxas_no_spill ARCH KERNEL" lines and exit 1 on any spill
#                    (test/t_gpu_resources.sh, in make test)
#     --configs FILE launch configurations "kernel threads dynamic_smem_bytes where" (one a line; default:
#                    bench/gpu-launch-configs.txt, every configuration the backend launched in the model runs of
#                    tools/gpu_model.sh; without it, the list below from kernels.cu's launch sites)
# Needs nvcc; without it, prints why and exits 77 (the test says "skipped").
#
# Occupancy (per SM), the rules of NVIDIA's CUDA Occupancy Calculator with the per-SM limits of the CUDA C++
# Programming Guide's table "Technical Specifications per Compute Capability" (and the tuning guides for
# the Ampere, Ada and Hopper architectures for shared memory):
#   registers: allocated per warp in units of 256 (regs_per_warp = ceil(regs · 32 / 256) · 256); each of the
#              4 SM sub-partitions has 16384 registers and holds whole warps: warps <= 4 · floor(16384 /
#              regs_per_warp); blocks <= floor(warps / warps_per_block). Max 255 registers per thread.
#   shared:    a block uses static + dynamic + 1 KiB reserved by the system (sm_80 and later); blocks <=
#              floor(smem_per_SM / that); dynamic over the per-block opt-in maximum does not launch.
#   warps:     blocks <= floor(max_warps_per_SM / warps_per_block);  blocks <= max_blocks_per_SM.
#   arch   max warps/SM  max blocks/SM  smem/SM (KiB)  max smem/block opt-in (KiB)   registers/SM
#   sm_80  64            32             164            163                           65536
#   sm_86  48            16             100            99                            65536
#   sm_89  48            24             100            99                            65536
#   sm_90  64            32             228            227                           65536
set -u
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
out="" check=0 configs=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --check) check=1; shift ;;
    --configs) configs=$2; shift 2 ;;
    *) echo "usage: tools/gpu_resources.sh [--out FILE] [--check] [--configs FILE]" >&2; exit 2 ;;
  esac
done
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "gpu_resources: nvcc ($NVCC) not found: the ptxas figures need it" >&2
  exit 77
fi
tmp=$(mktemp -d /tmp/vdp_gpu_resources_XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
ARCHS="80 86 89 90"

# ----- ptxas -v for each architecture, in parallel ------------------------------------------------------
for a in $ARCHS; do
  ( "$NVCC" -O3 -std=c++17 -gencode arch=compute_$a,code=sm_$a -I. -Xptxas -v -cubin -o "$tmp/k$a.cubin" kernels.cu \
      >"$tmp/ptxas$a.txt" 2>&1 || echo "nvcc failed for sm_$a" >"$tmp/fail$a" ) &
done
wait
for a in $ARCHS; do
  if [ -e "$tmp/fail$a" ]; then cat "$tmp/ptxas$a.txt" >&2; echo "gpu_resources: nvcc failed for sm_$a" >&2; exit 1; fi
done

# one line per (arch, kernel): arch mangled regs spill_st spill_ld stack smem
for a in $ARCHS; do
  awk -v arch="$a" '
    /Compiling entry function/ { split($0, q, "'"'"'"); fn = q[2] }
    /bytes stack frame/ { stack = $1; sst = $5; sld = $9 }
    /Used [0-9]+ registers/ {
      regs = 0; smem = 0
      for (i = 1; i <= NF; i++) {
        if ($(i + 1) ~ /^registers/) regs = $i
        if ($(i + 1) == "bytes" && $(i + 2) ~ /^smem/) smem = $i
      }
      if (fn != "") print arch, fn, regs, sst, sld, stack, smem
      fn = ""
    }' "$tmp/ptxas$a.txt"
done >"$tmp/raw.txt"
# readable names: "void attn_warp_kernel<2>(AttnParams, int)" -> attn_warp_kernel<2>
cut -d' ' -f2 "$tmp/raw.txt" | c++filt | sed -e 's/^void //' -e 's/(.*//' >"$tmp/names.txt"
paste -d' ' "$tmp/raw.txt" "$tmp/names.txt" | awk '{print $1, $8, $3, $4, $5, $6, $7}' | sort -k2,2 -k1,1n >"$tmp/res.txt"

# ----- launch configurations: kernel threads dynamic_smem where -------------------------------------------
# igemm's dynamic shared memory is ig_smem(NPH) = max(3·128·40·2 + 2·NPH·40·2, 128·129·4) bytes; NPH = the
# halo pixels of the tile ig_choose_tile picks (linear: 128; conv 3x3 one row of 128: 3·130 = 390).
if [ -z "$configs" ] && [ -s bench/gpu-launch-configs.txt ]; then
  # attn_warp_kernel<MD>: the instantiation follows from the shared memory (KC keys of head_dim hd + 16 queries):
  # head_dim <= 64 needs at most (32·129 + 16·64)·4 = 20608 bytes, <= 128 at most (32·257 + 16·128)·4 = 41088
  awk '$1 == "attn_warp_kernel<MD>" { $1 = $3 <= 20608 ? "attn_warp_kernel<2>" : $3 <= 41088 ? "attn_warp_kernel<4>" : "attn_warp_kernel<16>" }
       $1 !~ /^(prep_weight_kernel|f32_to_f16_kernel|f16_to_f32_kernel)$/ { print }' bench/gpu-launch-configs.txt >"$tmp/configs.txt"
  configs=$tmp/configs.txt
fi
if [ -z "$configs" ]; then
  configs=$tmp/configs.txt
  cat >"$configs" <<'CFG'
igemm_kernel 256 66048 linear-layers,1x1-convs,temporal-convs(epilogue-bound)
igemm_kernel 256 93120 conv3x3-stride1,tile-1x128(NPH=390)
flash_attn_kernel 256 55296 flash-attention-head_dim-64
attn_warp_kernel<2> 128 12544 temporal-attention-head_dim-64(KC=32)
attn_warp_kernel<4> 128 23040 CLIP-attention-head_dim-80(KC=32)
attn_warp_kernel<16> 128 82736 VAE-mid-attention-head_dim-512(KC=12)
gn_stats_kernel 256 0 GroupNorm-statistics
gn_apply_kernel 256 0 GroupNorm-apply
layernorm_kernel 256 0 LayerNorm
transpose_tile_kernel 256 0 transposes(32x8)
add_kernel 256 0 elementwise(grid-stride,256)
cfg_euler_kernel 256 0 sampler-step
CFG
fi

awk -v check="$check" '
  BEGIN {
    # per-SM limits (see the header comment): warps, blocks, smem/SM, smem/block opt-in (bytes)
    W[80] = 64; B[80] = 32; S[80] = 164 * 1024; O[80] = 163 * 1024
    W[86] = 48; B[86] = 16; S[86] = 100 * 1024; O[86] = 99 * 1024
    W[89] = 48; B[89] = 24; S[89] = 100 * 1024; O[89] = 99 * 1024
    W[90] = 64; B[90] = 32; S[90] = 228 * 1024; O[90] = 227 * 1024
    nspill = 0
  }
  FNR == NR { arch = $1; k = $2; regs[k, arch] = $3; sst[k, arch] = $4; sld[k, arch] = $5; stk[k, arch] = $6
              ssm[k, arch] = $7; if (!(k in seen)) { seen[k] = 1; order[nk + 0] = k; nk++ }; next }
  { cfg[nc + 0] = $0; nc++ }
  END {
    print "# GPU resources and occupancy (ptxas, per architecture)"
    print ""
    print "Generated by `make gpu-resources` (tools/gpu_resources.sh) from `nvcc -Xptxas -v` of kernels.cu. Occupancy"
    print "from the CUDA Occupancy Calculator rules with the per-SM limits of the CUDA C++ Programming Guide"
    print "(table \"Technical Specifications per Compute Capability\"); the rules are in the script'"'"'s header."
    print ""
    print "## Per kernel: registers / spill stores / spill loads / stack bytes / static smem bytes"
    print ""
    print "| kernel | sm_80 | sm_86 | sm_89 | sm_90 |"
    print "|---|---|---|---|---|"
    for (i = 0; i < nk; i++) {
      k = order[i]; line = "| `" k "` |"
      for (a = 80; a <= 90; a++) {
        if (!((k, a) in regs)) continue
        cell = regs[k, a] " / " sst[k, a] " / " sld[k, a] " / " stk[k, a] " / " ssm[k, a]
        if (sst[k, a] + sld[k, a] > 0) { cell = "**" cell " SPILL**"; nspill++ }
        line = line " " cell " |"
        if (check) {
          if (sst[k, a] + sld[k, a] > 0)
            printf "FAIL - ptxas_no_spill sm_%d %s spills %d bytes stored, %d loaded (%d registers)\n", a, k, sst[k, a], sld[k, a], regs[k, a] > "/dev/stderr"
        }
      }
      print line
    }
    if (check && nspill == 0) printf "ok - ptxas_no_spill %d kernels x 4 architectures: no spill stores or loads\n", nk > "/dev/stderr"
    print ""
    print "## Occupancy of the launch configurations (resident blocks per SM, warps per SM, the limiting resource)"
    print ""
    print "The configurations: bench/gpu-launch-configs.txt, what the backend launched in the model runs of"
    print "tools/gpu_model.sh (on the emulator, whose device has sm_90'"'"'s 227 KiB opt-in shared memory; on sm_86 /"
    print "sm_89 the implicit GEMM picks smaller tiles where these do not fit)."
    print ""
    print "| kernel | threads | dynamic smem | used for | sm_80 | sm_86 | sm_89 | sm_90 |"
    print "|---|---|---|---|---|---|---|---|"
    for (c = 0; c < nc; c++) {
      split(cfg[c], f, " "); k = f[1]; thr = f[2]; dyn = f[3]; note = f[4]; gsub(/-/, " ", note); gsub(/,/, ", ", note)
      line = "| `" k "` | " thr " | " dyn " | " note " |"
      for (a = 80; a <= 90; a++) {
        if (!(a in W)) continue
        if (!((k, a) in regs)) { line = line " ? |"; continue }
        wpb = int((thr + 31) / 32)
        rpw = int((regs[k, a] * 32 + 255) / 256) * 256
        bw = int(W[a] / wpb); lim = "warps"; best = bw
        if (B[a] < best) { best = B[a]; lim = "blocks" }
        br = int(4 * int(16384 / rpw) / wpb)
        if (br < best) { best = br; lim = "registers" }
        sb = ssm[k, a] + dyn + 1024
        if (ssm[k, a] + dyn > O[a]) { line = line " over the " O[a] "-byte opt-in limit (the backend picks a smaller tile there) |"; continue }
        bs = int(S[a] / sb)
        if (bs < best) { best = bs; lim = "shared memory" }
        line = line " " best " blocks, " best * wpb " warps (" lim ") |"
      }
      print line
    }
    exit nspill > 0 && check ? 1 : 0
  }' "$tmp/res.txt" "$configs" >"$tmp/report.md"
rc=$?
if [ -n "$out" ]; then cp "$tmp/report.md" "$out.tmp" && mv "$out.tmp" "$out"; else cat "$tmp/report.md"; fi
exit $rc
