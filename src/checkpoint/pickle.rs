//! A restricted unpickler for PyTorch state_dicts (pickle protocols 2-4).
//!
//! It is a small stack machine that understands only what `torch.save(state_dict)` writes:
//! containers, numbers, strings, and calls of an allow-list of globals (OrderedDict and the
//! tensor-rebuild functions), with storages referenced through persistent ids. Any other
//! global, any other callable, and any malformed or truncated stream is an error. Nothing in
//! a file is ever executed. Sizes are checked against the input before anything is
//! allocated.

/// Element types of torch storages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    fn from_storage_name(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" | "FloatTensor" => DType::F32,
            "HalfStorage" | "HalfTensor" => DType::F16,
            "BFloat16Storage" | "BFloat16Tensor" => DType::BF16,
            "DoubleStorage" | "DoubleTensor" => DType::F64,
            "LongStorage" | "LongTensor" => DType::I64,
            "IntStorage" | "IntTensor" => DType::I32,
            "ShortStorage" | "ShortTensor" => DType::I16,
            "CharStorage" | "CharTensor" => DType::I8,
            "ByteStorage" | "ByteTensor" => DType::U8,
            "BoolStorage" | "BoolTensor" => DType::Bool,
            _ => return None,
        })
    }

    /// Decodes little-endian elements to f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let n = self.size();
        bytes
            .chunks_exact(n)
            .map(|b| match self {
                DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                DType::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
                DType::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
                DType::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                DType::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
                DType::I8 => b[0] as i8 as f32,
                DType::U8 => b[0] as f32,
                DType::Bool => (b[0] != 0) as u8 as f32,
            })
            .collect()
    }
}

/// The globals a state_dict may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(DType),
    /// Legacy `torch.FloatTensor` etc., rebuilt through BUILD.
    TensorType(DType),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch", n) if n.ends_with("Storage") => {
                DType::from_storage_name(n).map(Global::Storage)
            }
            ("torch", n) if n.ends_with("Tensor") => {
                DType::from_storage_name(n).map(Global::TensorType)
            }
            _ => None,
        }
    }
}

/// A storage named by a persistent id.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: String,
    pub numel: usize,
    /// Legacy views: (base key, element offset into the base).
    pub view_of: Option<(String, usize)>,
}

/// A tensor as a view of a storage.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Unpickled values.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// `torch.FloatTensor()` waiting for its BUILD state.
    EmptyTensor(DType),
}

/// Limits that keep a hostile file from exhausting memory.
const MAX_DEPTH: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 20;

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: std::collections::HashMap<u32, Value>,
}

type R<T> = std::result::Result<T, String>;

impl Machine<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        if n > self.data.len() - self.pos {
            return Err(format!(
                "truncated pickle: {n} bytes needed at offset {}",
                self.pos
            ));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or("truncated pickle: unterminated GLOBAL")?;
        let s = String::from_utf8(rest[..end].to_vec()).map_err(|_| "GLOBAL name is not UTF-8")?;
        self.pos += end + 1;
        Ok(s)
    }
    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() >= MAX_DEPTH {
            return Err("pickle stack too deep".into());
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> R<Value> {
        match self.stack.pop() {
            Some(Value::Mark) | None => Err("pickle stack underflow".into()),
            Some(v) => Ok(v),
        }
    }
    /// Pops everything above the last MARK.
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| *v == Value::Mark)
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top_mut(&mut self) -> R<&mut Value> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn memoize(&mut self, key: u32) -> R<()> {
        if self.memo.len() >= MAX_MEMO {
            return Err("pickle memo too large".into());
        }
        let v = self.stack.last().ok_or("pickle stack underflow")?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn string(&mut self, n: usize) -> R<Value> {
        let b = self.take(n)?;
        Ok(Value::Str(
            String::from_utf8(b.to_vec()).map_err(|_| "string is not UTF-8")?,
        ))
    }
}

fn as_usize(v: &Value, what: &str) -> R<usize> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as usize),
        _ => Err(format!("{what} must be a non-negative integer, got {v:?}")),
    }
}

fn as_dims(v: &Value, what: &str) -> R<Vec<usize>> {
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|i| as_usize(i, what)).collect()
        }
        _ => Err(format!("{what} must be a tuple, got {v:?}")),
    }
}

/// The storage of a persistent id: `('storage', StorageType, key, location, numel)` and the
/// legacy 6-tuple with a view description.
fn persistent_storage(pid: Value) -> R<Value> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.as_slice() {
        [
            Value::Str(tag),
            Value::Global(Global::Storage(dtype)),
            Value::Str(key),
            Value::Str(_location),
            numel,
            rest @ ..,
        ] if tag == "storage" && rest.len() <= 1 => {
            let view_of = match rest.first() {
                None | Some(Value::None) => None,
                Some(Value::Tuple(v)) => match v.as_slice() {
                    [Value::Str(base), offset, _size] => {
                        Some((base.clone(), as_usize(offset, "view offset")?))
                    }
                    _ => return Err("malformed storage view".into()),
                },
                Some(other) => return Err(format!("malformed storage view {other:?}")),
            };
            Ok(Value::Storage(StorageRef {
                dtype: *dtype,
                key: key.clone(),
                numel: as_usize(numel, "storage size")?,
                view_of,
            }))
        }
        _ => Err(format!("unsupported persistent id {items:?}")),
    }
}

fn rebuild_tensor(args: &[Value]) -> R<Value> {
    match args {
        [Value::Storage(s), offset, size, stride, ..] => Ok(Value::Tensor(TensorRef {
            storage: s.clone(),
            offset: as_usize(offset, "storage offset")?,
            shape: as_dims(size, "tensor size")?,
            stride: as_dims(stride, "tensor stride")?,
        })),
        _ => Err("malformed tensor rebuild arguments".into()),
    }
}

/// Applies an allowed callable.
fn call(g: Global, args: Vec<Value>) -> R<Value> {
    match g {
        Global::OrderedDict if args.is_empty() => Ok(Value::Dict(Vec::new())),
        Global::RebuildTensorV2 if (6..=7).contains(&args.len()) => rebuild_tensor(&args),
        Global::RebuildTensor if args.len() == 4 => rebuild_tensor(&args),
        Global::RebuildParameter if (2..=3).contains(&args.len()) => match &args[0] {
            t @ Value::Tensor(_) => Ok(t.clone()),
            _ => Err("_rebuild_parameter of a non-tensor".into()),
        },
        Global::TensorType(d) if args.is_empty() => Ok(Value::EmptyTensor(d)),
        other => Err(format!(
            "refusing to call {other:?} with {} arguments",
            args.len()
        )),
    }
}

/// Runs one pickle starting at `data[0]`; returns the value and the bytes consumed.
pub fn unpickle(data: &[u8]) -> R<(Value, usize)> {
    let mut m = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: Default::default(),
    };
    loop {
        let op = m.u8()?;
        match op {
            0x80 => {
                let proto = m.u8()?;
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                m.take(8)?; // FRAME length: frames are read as one stream
            }
            b'.' => {
                let v = m.pop()?;
                return Ok((v, m.pos));
            }
            b'c' => {
                let module = m.line()?;
                let name = m.line()?;
                let g = Global::resolve(&module, &name)
                    .ok_or_else(|| format!("refusing global {module}.{name}"))?;
                m.push(Value::Global(g))?;
            }
            0x93 => {
                let name = m.pop()?;
                let module = m.pop()?;
                let (Value::Str(module), Value::Str(name)) = (module, name) else {
                    return Err("STACK_GLOBAL needs two strings".into());
                };
                let g = Global::resolve(&module, &name)
                    .ok_or_else(|| format!("refusing global {module}.{name}"))?;
                m.push(Value::Global(g))?;
            }
            b'q' => {
                let k = m.u8()? as u32;
                m.memoize(k)?;
            }
            b'r' => {
                let k = m.u32()?;
                m.memoize(k)?;
            }
            0x94 => {
                let k = m.memo.len() as u32;
                m.memoize(k)?;
            }
            b'h' | b'j' => {
                let k = if op == b'h' { m.u8()? as u32 } else { m.u32()? };
                let v = m
                    .memo
                    .get(&k)
                    .cloned()
                    .ok_or_else(|| format!("pickle memo {k} is not set"))?;
                m.push(v)?;
            }
            b'(' => m.push(Value::Mark)?,
            b't' => {
                let items = m.pop_mark()?;
                m.push(Value::Tuple(items))?;
            }
            b')' => m.push(Value::Tuple(Vec::new()))?,
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut items = (0..n).map(|_| m.pop()).collect::<R<Vec<_>>>()?;
                items.reverse();
                m.push(Value::Tuple(items))?;
            }
            b'X' => {
                let n = m.u32()? as usize;
                let v = m.string(n)?;
                m.push(v)?;
            }
            0x8c => {
                let n = m.u8()? as usize;
                let v = m.string(n)?;
                m.push(v)?;
            }
            b'C' => {
                let n = m.u8()? as usize;
                let b = m.take(n)?.to_vec();
                m.push(Value::Bytes(b))?;
            }
            b'B' => {
                let n = m.u32()? as usize;
                let b = m.take(n)?.to_vec();
                m.push(Value::Bytes(b))?;
            }
            b'J' => {
                let v = m.u32()? as i32 as i64;
                m.push(Value::Int(v))?;
            }
            b'K' => {
                let v = m.u8()? as i64;
                m.push(Value::Int(v))?;
            }
            b'M' => {
                let v = m.u16()? as i64;
                m.push(Value::Int(v))?;
            }
            0x8a => {
                let n = m.u8()? as usize;
                let b = m.take(n)?;
                if n > 8 {
                    // Only the legacy magic number is this long; keep its low 64 bits.
                    let mut low = [0u8; 8];
                    low.copy_from_slice(&b[..8]);
                    m.push(Value::Int(i64::from_le_bytes(low)))?;
                } else {
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    m.push(Value::Int(v))?;
                }
            }
            b'G' => {
                let v = f64::from_be_bytes(m.take(8)?.try_into().expect("8 bytes"));
                m.push(Value::Float(v))?;
            }
            0x88 => m.push(Value::Bool(true))?,
            0x89 => m.push(Value::Bool(false))?,
            b'N' => m.push(Value::None)?,
            b'}' => m.push(Value::Dict(Vec::new()))?,
            b']' => m.push(Value::List(Vec::new()))?,
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                match m.top_mut()? {
                    Value::Dict(d) => d.push((k, v)),
                    _ => return Err("SETITEM on a non-dict".into()),
                }
            }
            b'u' => {
                let items = m.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let mut it = items.into_iter();
                match m.top_mut()? {
                    Value::Dict(d) => {
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    _ => return Err("SETITEMS on a non-dict".into()),
                }
            }
            b'a' => {
                let v = m.pop()?;
                match m.top_mut()? {
                    Value::List(l) => l.push(v),
                    _ => return Err("APPEND on a non-list".into()),
                }
            }
            b'e' => {
                let items = m.pop_mark()?;
                match m.top_mut()? {
                    Value::List(l) => l.extend(items),
                    _ => return Err("APPENDS on a non-list".into()),
                }
            }
            b'Q' => {
                let pid = m.pop()?;
                let s = persistent_storage(pid)?;
                m.push(s)?;
            }
            b'R' => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let (Value::Global(g), Value::Tuple(args)) = (callable, args) else {
                    return Err("REDUCE on anything but an allowed global".into());
                };
                let v = call(g, args)?;
                m.push(v)?;
            }
            b'b' => {
                let state = m.pop()?;
                let target = m.top_mut()?;
                // Legacy tensors get their (storage, offset, size, stride) here; for every
                // other object BUILD only sets attributes (`_metadata`), which we ignore.
                if let Value::EmptyTensor(_) = target {
                    let Value::Tuple(args) = state else {
                        return Err("malformed legacy tensor state".into());
                    };
                    *target = rebuild_tensor(&args)?;
                }
            }
            other => {
                return Err(format!(
                    "unsupported pickle opcode 0x{other:02x} at offset {}",
                    m.pos - 1
                ));
            }
        }
    }
}
