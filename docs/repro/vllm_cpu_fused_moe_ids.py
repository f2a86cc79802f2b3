"""vLLM 0.32 CPU backend: what ``cpu_fused_moe`` (the kernel FusedMoE runs on CPU) does with ids it
cannot own. Run in the vLLM env: $(scripts/venv.sh vllm)/bin/python docs/repro/vllm_cpu_fused_moe_ids.py

  plain: all ids valid -> matches a per-token reference (bf16 rounding only)
  neg:   some ids -1 (a masked slot)   -> wrong sums: the kernel does not skip it
  oob:   some ids >= number of local experts (what EP hands it: global ids, the expert map is
         ignored by CPUUnquantizedExperts.apply) -> wrong sums and, on some runs, heap corruption
         ("free(): invalid next size (fast)") -- the segfault seen with EP on a plain Mixtral
"""
import torch, sys
from vllm._custom_ops import cpu_fused_moe, cpu_prepack_moe_weight
torch.manual_seed(0)
E,I,H,T,k=8,64,128,5,3
w13=(torch.randn(E,2*I,H)/H**.5).bfloat16(); w2=(torch.randn(E,H,I)/I**.5).bfloat16()
x=torch.randn(T,H).bfloat16()
ids=torch.randint(0,E,(T,k),dtype=torch.int32); w=torch.rand(T,k)
def ref(ids,w):
    out=torch.zeros(T,H)
    for t in range(T):
        for j in range(k):
            e=int(ids[t,j])
            if e<0 or e>=E: continue
            g,u=(x[t].float()@w13[e].float().T).chunk(2)
            out[t]+=w[t,j]*((torch.nn.functional.silu(g)*u)@w2[e].float().T)
    return out
p13=cpu_prepack_moe_weight(w13,"vec"); p2=cpu_prepack_moe_weight(w2,"vec")
for name,ids_ in [("plain",ids), ("neg", ids.masked_fill(torch.rand(T,k)<0.4,-1)), ("oob", ids.masked_fill(torch.rand(T,k)<0.4,E+3))]:
    out=torch.empty(T,H,dtype=torch.bfloat16)
    cpu_fused_moe(out,x,p13,p2,None,None,w,ids_,"silu","vec")
    print(name, (out.float()-ref(ids_,w)).abs().max().item(), ids_.tolist()[0], flush=True)
