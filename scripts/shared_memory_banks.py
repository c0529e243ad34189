#!/usr/bin/env python3
# Shared-memory wavefronts per warp per K tile of the tiled conv kernels (kernels/conv.cu),
# for the layout before and after the bank-conflict fix: a model, not a measurement (a
# request costs the most distinct 4-byte words it touches in any one bank), to compare with
# the FFMA instructions of the same K tile. `python3 scripts/shared_memory_banks.py`.
def cost(words):
    banks={}
    for w in set(words): banks.setdefault(w%32,set()).add(w)
    return max(len(v) for v in banks.values())
def kernel(TM,TN,RM,RN,new):
    TX=TN//RN; arow = TM+4 if (new and TM>=32) else TM
    def bslot(tx,j):
        if new and RN%4==0: return j//4*(TX*4)+tx*4+j%4
        return tx*RN+j
    total={'A stores':0,'B stores':0,'A reads':0,'B reads':0}
    warp=range(32)
    # stores: e = tid + i*256
    for i in range(16*TM//256 if 16*TM>=256 else 1):
        words=[]
        for t in warp:
            e=t+i*256
            if e>=16*TM: continue
            kk=e%16; m=e//16; words.append(kk*arow+m)
        if words: total['A stores']+=cost(words)
    for i in range(max(1,16*TN//256)):
        words=[]
        for t in warp:
            kk=t//TN+i*(256//TN); col=t%TN; words.append(kk*TN+col)
        total['B stores']+=cost(words)
    for kk in range(16):
        for g in range(0,RM,4) if RM>=4 else [0]:
            words=[kk*arow+(t//TX)*RM+g+q for t in warp for q in range(min(4,RM))]
            total['A reads']+=cost(words)
        groups=range(0,RN,4) if RN%4==0 else [None]
        for g in groups:
            if g is None: words=[kk*TN+bslot(t%TX,0) for t in warp]
            else: words=[kk*TN+bslot(t%TX,g+q) for t in warp for q in range(4)]
            total['B reads']+=cost(words)
    ffma = 16*RM*RN  # per thread per K tile = warp instructions
    return total, ffma
for name,shape in [('64x64 (4x4)',(64,64,4,4)),('128x128 (8x8)',(128,128,8,8)),('4x256 (4x1)',(4,256,4,1))]:
    for new in [False,True]:
        t,f=kernel(*shape,new)
        print(f"{name:14s} {'new' if new else 'old'}: {t} total {sum(t.values())} wavefronts vs {f} FFMA instructions")
