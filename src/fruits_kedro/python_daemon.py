import sys, os, time
t=time.time()
def _bytecode_path_first():
    archives = [p for p in sys.path if p.endswith((".zip", ".jar"))]
    for p in archives:
        sys.path.remove(p)
        sys.path_importer_cache.pop(p, None)
    sys.path.extend(archives)
_bytecode_path_first()
from pyspark import daemon
print(f"DAEMON {t:.2f} {time.time():.2f} {daemon.__file__}", file=sys.stderr, flush=True)
if __name__ == "__main__":
    daemon.manager()
