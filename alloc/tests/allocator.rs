//! The allocator serves a program's allocations through mimalloc, with eager arena commits
//! turned off by the time anything has been allocated.
#![allow(unsafe_code)]

#[global_allocator]
static ALLOCATOR: basidia_alloc::Allocator = basidia_alloc::Allocator;

#[test]
fn allocations_go_through_mimalloc_with_eager_commit_off() {
    let mut blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 1 << (i % 16)]).collect();
    blocks[3].resize(1 << 20, 7);
    let threads: Vec<_> = blocks
        .into_iter()
        .map(|b| std::thread::spawn(move || b.iter().map(|&x| u64::from(x)).sum::<u64>()))
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total > 0);
    let block = Box::new([0u8; 100]);
    // SAFETY: plain queries of mimalloc's state.
    unsafe {
        assert!(libmimalloc_sys::mi_is_in_heap_region(block.as_ptr().cast()));
        assert_eq!(libmimalloc_sys::mi_option_get(4), 0);
    }
}

#[test]
fn every_block_has_its_layouts_alignment() {
    use std::alloc::{GlobalAlloc, Layout};
    let a = basidia_alloc::Allocator;
    for align in [1usize, 2, 4, 8, 16, 32, 64, 128, 4096] {
        for size in [
            1usize, 3, 8, 15, 16, 24, 100, 1000, 1024, 1500, 4000, 70_000,
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; every block is freed with its own layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "alloc {size} bytes aligned {align}");
                p.write_bytes(0xAB, size);
                let grown = a.realloc(p, layout, size * 3);
                assert_eq!(
                    grown as usize % align,
                    0,
                    "realloc to {} aligned {align}",
                    size * 3
                );
                assert_eq!(*grown.add(size - 1), 0xAB, "realloc keeps the contents");
                a.dealloc(grown, Layout::from_size_align(size * 3, align).unwrap());
                let z = a.alloc_zeroed(layout);
                assert_eq!(z as usize % align, 0, "zeroed {size} bytes aligned {align}");
                assert!((0..size).all(|i| *z.add(i) == 0), "zeroed means zeroed");
                a.dealloc(z, layout);
            }
        }
    }
}
