//! Typed per-brick aspects: each brick instance owns a [`Slot`] and reaches only its own state on
//! a request. Slots are small integers handed out by a global allocator and returned on drop, so
//! a request's aspect table stays as small as the number of live bricks.

use parking_lot::Mutex;
use std::any::Any;
use std::marker::PhantomData;

/// Per-request private state of one brick. `Default` builds it lazily on first access; `reset`
/// runs once when a recycled request reaches this brick again (the allocation is reused).
pub trait Aspect: Default + Send + 'static {
    /// Return to the state of a fresh request. The default rebuilds from `Default`.
    fn reset(&mut self) {
        *self = Self::default();
    }
}

pub(crate) trait AspectObj: Send {
    fn reset_obj(&mut self);
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<A: Aspect> AspectObj for A {
    fn reset_obj(&mut self) {
        self.reset();
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The key of one brick instance's aspect. Two instances of the same brick type hold different
/// slots, so they never see each other's state.
///
/// A slot must outlive every request in flight through its brick (bricks drain before dropping).
pub struct Slot<A: Aspect> {
    index: usize,
    _marker: PhantomData<fn() -> A>,
}

impl<A: Aspect> Slot<A> {
    /// Allocate a fresh slot.
    pub fn new() -> Self {
        Slot {
            index: SLOTS.alloc(),
            _marker: PhantomData,
        }
    }

    /// The slot's index into a request's aspect table.
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<A: Aspect> Default for Slot<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aspect> Drop for Slot<A> {
    fn drop(&mut self) {
        SLOTS.free(self.index);
    }
}

impl<A: Aspect> std::fmt::Debug for Slot<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot<{}>({})", std::any::type_name::<A>(), self.index)
    }
}

struct SlotAllocator {
    inner: Mutex<(usize, Vec<usize>)>,
}

impl SlotAllocator {
    fn alloc(&self) -> usize {
        let mut g = self.inner.lock();
        // Reuse the lowest free index to keep aspect tables dense.
        if let Some((pos, _)) = g.1.iter().enumerate().min_by_key(|(_, i)| **i) {
            return g.1.swap_remove(pos);
        }
        g.0 += 1;
        g.0 - 1
    }
    fn free(&self, index: usize) {
        self.inner.lock().1.push(index);
    }
}

static SLOTS: SlotAllocator = SlotAllocator {
    inner: Mutex::new((0, Vec::new())),
};

struct Entry {
    life: u64,
    value: Box<dyn AspectObj>,
}

/// The aspect table of one request. Entries survive recycling, so a steady stream of recycled
/// requests allocates nothing here.
#[derive(Default)]
pub(crate) struct Aspects {
    entries: Vec<Option<Entry>>,
}

impl Aspects {
    pub(crate) fn get<A: Aspect>(&mut self, slot: &Slot<A>, life: u64) -> &mut A {
        let i = slot.index;
        if self.entries.len() <= i {
            self.entries.resize_with(i + 1, || None);
        }
        let entry = &mut self.entries[i];
        let fits = matches!(entry, Some(e) if e.value.as_any().is::<A>());
        if !fits {
            *entry = Some(Entry {
                life,
                value: Box::new(A::default()),
            });
        }
        let e = entry.as_mut().expect("entry was just filled");
        if e.life != life {
            e.value.reset_obj();
            e.life = life;
        }
        e.value
            .as_any_mut()
            .downcast_mut::<A>()
            .expect("type checked above")
    }
}
