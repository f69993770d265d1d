import sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 4]
t = [float(r[0]) for r in rows]; busy = [int(r[1]) for r in rows]; own = [int(r[2]) for r in rows]
w = 5  # 2.5 s windows
print("other processes' CPU (cores of 2) per 2.5 s window:")
out = []
for a in range(0, len(rows) - w, w):
    dt = t[a + w] - t[a]
    other = ((busy[a + w] - busy[a]) - (own[a + w] - own[a])) / 100 / dt
    out.append(round(other, 2))
print(out)
dt = t[-1] - t[0]
print(f"whole run {dt:.0f} s: other {((busy[-1]-busy[0])-(own[-1]-own[0]))/100/dt:.2f} cores, own {(own[-1]-own[0])/100/dt:.2f} cores")
